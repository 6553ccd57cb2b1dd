//! The deployment files, checked offline: every YAML parses, the Kubernetes core kinds pass
//! `kubernetes-validate`, the prometheus-operator objects are structure-checked against the
//! DaemonSet and Service, the PrometheusRule holds exactly `alerts/*.rules.yml`, the systemd
//! unit verifies and rates ≤ 2.5, the Dockerfile is multi-stage and non-root, and compose
//! mounts files that exist with a Prometheus config that `promtool check config` accepts.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::{self, bin, require_tool, root, Daemon};

/// The YAML documents of a file (split on `---` lines).
fn docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines().chain(std::iter::once("---")) {
        if line.trim_end() == "---" {
            let meaningful = cur
                .lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
            if meaningful {
                let v: Value = serde_saphyr::from_str(&cur)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                out.push(v);
            }
            cur.clear();
        } else {
            cur.push_str(line);
            cur.push('\n');
        }
    }
    out
}

fn k8s(file: &str) -> PathBuf {
    root().join("deploy/kubernetes").join(file)
}

fn one(file: &str) -> Value {
    let mut d = docs(&k8s(file));
    assert_eq!(d.len(), 1, "{file}");
    d.remove(0)
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{ptr} is not a string in {v:#}"))
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

#[test]
fn every_yaml_file_under_deploy_parses() {
    let mut files = Vec::new();
    yaml_files(&root().join("deploy"), &mut files);
    assert!(files.len() >= 12, "{files:?}");
    for f in files {
        assert!(!docs(&f).is_empty(), "{} holds no document", f.display());
    }
}

const CORE: [&str; 5] = [
    "namespace.yaml",
    "serviceaccount.yaml",
    "configmap.yaml",
    "daemonset.yaml",
    "service.yaml",
];

fn kubernetes_validate(files: &[PathBuf]) -> (bool, String) {
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "-k", "1.30.0"])
        .args(files)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn kubernetes_core_kinds_pass_kubernetes_validate() {
    if !require_tool("kubernetes-validate") {
        return;
    }
    let files: Vec<PathBuf> = CORE.iter().map(|f| k8s(f)).collect();
    let (ok, report) = kubernetes_validate(&files);
    assert!(ok, "{report}");
    assert_eq!(
        report.matches(" passed for ").count(),
        CORE.len(),
        "{report}"
    );
    // The validator does reject a wrong field (strict mode), so the pass above means something.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("daemonset.yaml");
    let text = std::fs::read_to_string(k8s("daemonset.yaml"))
        .unwrap()
        .replace("hostPID: true", "hostPid: true");
    std::fs::write(&bad, text).unwrap();
    let (ok, report) = kubernetes_validate(&[bad]);
    assert!(!ok, "a misspelt field passed: {report}");
}

#[test]
fn kustomization_lists_files_that_exist() {
    let k = one("kustomization.yaml");
    let resources: Vec<&str> = k["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for r in &resources {
        assert!(k8s(r).is_file(), "kustomization.yaml lists missing {r}");
    }
    // Every manifest is installed, except the PodMonitor, the documented alternative to
    // the ServiceMonitor.
    for e in std::fs::read_dir(root().join("deploy/kubernetes")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".yaml") && name != "kustomization.yaml" && name != "podmonitor.yaml" {
            assert!(
                resources.contains(&name.as_str()),
                "{name} not in kustomization.yaml"
            );
        }
    }
    // With kubectl at hand (it is not a Debian package, so CI may lack it), build it.
    if Command::new("sh")
        .args(["-c", "command -v kubectl"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(root().join("deploy/kubernetes"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let objects: usize = resources.iter().map(|r| docs(&k8s(r)).len()).sum();
        assert_eq!(
            text.lines().filter(|l| l.starts_with("kind: ")).count(),
            objects
        );
        assert_eq!(
            text.lines()
                .filter(|l| l.trim() == "namespace: gpu-train-exporter")
                .count(),
            objects - 1,
            "every namespaced object is in the namespace\n{text}"
        );
    }
}

#[test]
fn daemonset_has_what_a_gpu_node_needs() {
    let ds = one("daemonset.yaml");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"]["nvidia.com/gpu.present"], "true");
    assert!(
        pod["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "nvidia.com/gpu"
                && t["effect"] == "NoSchedule"
                && t["operator"] == "Exists"),
        "{pod:#}"
    );
    assert_eq!(pod["runtimeClassName"], "nvidia");
    assert_eq!(pod["hostPID"], true);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(pod["securityContext"]["runAsUser"].as_u64().unwrap() > 0);
    assert_eq!(pod["automountServiceAccountToken"], false);
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let env: Vec<(&str, &str)> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (s(e, "/name"), s(e, "/value")))
        .collect();
    assert!(env.contains(&("NVIDIA_VISIBLE_DEVICES", "all")));
    assert!(env.contains(&("NVIDIA_DRIVER_CAPABILITIES", "utility")));
    // No GPU is requested: the exporter must not take one from the jobs.
    let res = &c["resources"];
    assert!(!res.to_string().contains("nvidia.com/gpu"), "{res}");
    assert!(res["requests"]["memory"].is_string() && res["requests"]["cpu"].is_string());
    assert!(res["limits"]["memory"].is_string());
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    // Probes on /healthz at the declared port.
    let port = s(c, "/ports/0/name");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(c[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], port, "{probe}");
    }
    assert_eq!(c["ports"][0]["containerPort"], 9842);
    // The log directory: a read-only hostPath mount.
    let volumes = pod["volumes"].as_array().unwrap();
    let mounts = c["volumeMounts"].as_array().unwrap();
    let logs = volumes
        .iter()
        .find(|v| v["hostPath"].is_object())
        .expect("a hostPath volume for the logs");
    let m = mounts
        .iter()
        .find(|m| m["name"] == logs["name"])
        .expect("the log volume is mounted");
    assert_eq!(m["readOnly"], true);
    // The kubelet's pod-resources directory: a read-only hostPath mount at the same path,
    // holding the socket the daemon reads by default.
    let socket = Path::new(gpu_train_exporter::config::DEFAULT_PODS_SOCKET);
    let dir = socket.parent().unwrap().to_str().unwrap();
    let pr = volumes
        .iter()
        .find(|v| v["hostPath"]["path"] == dir)
        .expect("a hostPath volume for the pod-resources socket");
    let m = mounts
        .iter()
        .find(|m| m["name"] == pr["name"])
        .expect("the pod-resources volume is mounted");
    assert_eq!(m["mountPath"], dir);
    assert_eq!(m["readOnly"], true);
    // Every mount has a volume, the config volume is the ConfigMap, and --config points
    // into its mount.
    for m in mounts {
        assert!(volumes.iter().any(|v| v["name"] == m["name"]), "{m}");
    }
    let cm = one("configmap.yaml");
    let cfg_vol = volumes.iter().find(|v| v["configMap"].is_object()).unwrap();
    assert_eq!(cfg_vol["configMap"]["name"], cm["metadata"]["name"]);
    let cfg_mount = s(
        mounts
            .iter()
            .find(|m| m["name"] == cfg_vol["name"])
            .unwrap(),
        "/mountPath",
    );
    let key = cm["data"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    let want = format!("--config={cfg_mount}/{key}");
    assert!(
        c["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == &Value::from(want.clone())),
        "{want}"
    );
    // Pods carry the labels the Service and the monitors select.
    let labels = &ds["spec"]["template"]["metadata"]["labels"];
    for (k, v) in ds["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&labels[k], v);
    }
}

/// `check-config` on a config file's text.
fn check_config(text: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.yaml");
    std::fs::write(&p, text).unwrap();
    harness::run(&["check-config", p.to_str().unwrap()])
}

#[test]
fn shipped_exporter_configs_pass_check_config() {
    let cm = one("configmap.yaml");
    for (key, text) in cm["data"].as_object().unwrap() {
        let out = check_config(text.as_str().unwrap());
        assert!(
            out.status.success(),
            "{key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let compose = std::fs::read_to_string(root().join("deploy/compose/exporter.yaml")).unwrap();
    let out = check_config(&compose);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And check-config does fail on a broken one.
    assert_eq!(check_config("logs:\n  - pth: /x\n").status.code(), Some(2));
}

fn relabels_node_to_instance(relabelings: &Value) -> bool {
    relabelings.as_array().is_some_and(|rs| {
        rs.iter().any(|r| {
            r["sourceLabels"] == serde_json::json!(["__meta_kubernetes_pod_node_name"])
                && r["targetLabel"] == "instance"
        })
    })
}

#[test]
fn monitors_select_the_exporter_and_relabel_instance_to_the_node() {
    let ds = one("daemonset.yaml");
    let pod_labels = &ds["spec"]["template"]["metadata"]["labels"];
    let container_ports: Vec<&str> = ds["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| s(p, "/name"))
        .collect();
    let svc = one("service.yaml");
    // alerts/ match job="gpu-train-exporter": the ServiceMonitor's job is the Service name.
    assert_eq!(svc["metadata"]["name"], "gpu-train-exporter");
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&pod_labels[k], v, "Service selects the pods");
    }
    let svc_ports: Vec<&str> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| s(p, "/name"))
        .collect();
    for p in svc["spec"]["ports"].as_array().unwrap() {
        assert!(container_ports.contains(&s(p, "/targetPort")));
    }

    let sm = one("servicemonitor.yaml");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["kind"], "ServiceMonitor");
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            &svc["metadata"]["labels"][k], v,
            "ServiceMonitor selects the Service"
        );
    }
    let eps = sm["spec"]["endpoints"].as_array().unwrap();
    assert!(!eps.is_empty());
    for ep in eps {
        assert!(svc_ports.contains(&s(ep, "/port")), "{ep}");
        assert_eq!(ep["path"], "/metrics");
        assert!(relabels_node_to_instance(&ep["relabelings"]), "{ep:#}");
    }

    let pm = one("podmonitor.yaml");
    assert_eq!(pm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(pm["kind"], "PodMonitor");
    for (k, v) in pm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&pod_labels[k], v, "PodMonitor selects the pods");
    }
    for ep in pm["spec"]["podMetricsEndpoints"].as_array().unwrap() {
        assert!(container_ports.contains(&s(ep, "/port")), "{ep}");
        assert!(relabels_node_to_instance(&ep["relabelings"]), "{ep:#}");
        assert!(ep["relabelings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["targetLabel"] == "job" && r["replacement"] == "gpu-train-exporter"));
    }
}

/// The rule groups of every `alerts/*.rules.yml` under `dir`, in file-name order.
fn alert_groups(dir: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("alerts"))
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.to_string_lossy().ends_with(".rules.yml"));
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            let d = docs(f);
            assert_eq!(d.len(), 1, "{}", f.display());
            d[0]["groups"].as_array().cloned().unwrap_or_default()
        })
        .collect()
}

#[test]
fn prometheusrule_holds_exactly_the_alert_rules() {
    let rule_docs = docs(&k8s("prometheusrule.yaml"));
    assert!(!rule_docs.is_empty());
    let mut groups = Vec::new();
    for d in &rule_docs {
        assert_eq!(d["apiVersion"], "monitoring.coreos.com/v1");
        assert_eq!(d["kind"], "PrometheusRule");
        assert!(d["metadata"]["name"].is_string());
        groups.extend(d["spec"]["groups"].as_array().unwrap().iter().cloned());
    }
    let want = alert_groups(&root());
    if want.is_empty() {
        eprintln!("note: no alerts/*.rules.yml in the tree; the PrometheusRule must be empty");
    }
    assert_eq!(
        groups, want,
        "deploy/kubernetes/prometheusrule.yaml differs from alerts/: run scripts/gen-prometheusrule.sh"
    );
    for g in &groups {
        for r in g["rules"].as_array().unwrap() {
            assert!(r["expr"].is_string(), "{r}");
            assert!(r["alert"].is_string() || r["record"].is_string(), "{r}");
        }
    }
    let out = Command::new("bash")
        .arg(root().join("scripts/gen-prometheusrule.sh"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The check does catch a stale file: change a rule in a copy and it fails.
    let dir = tempfile::tempdir().unwrap();
    for sub in ["scripts", "deploy/kubernetes", "alerts"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    std::fs::copy(
        root().join("scripts/gen-prometheusrule.sh"),
        dir.path().join("scripts/gen-prometheusrule.sh"),
    )
    .unwrap();
    std::fs::copy(
        k8s("prometheusrule.yaml"),
        dir.path().join("deploy/kubernetes/prometheusrule.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("alerts/zz-extra.rules.yml"),
        "groups:\n  - name: extra\n    rules:\n      - alert: Extra\n        expr: vector(1)\n",
    )
    .unwrap();
    let stale = Command::new("bash")
        .arg(dir.path().join("scripts/gen-prometheusrule.sh"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        !stale.status.success(),
        "a stale PrometheusRule passed --check"
    );
    // Regenerated, it holds the extra rule too.
    let regen = Command::new("bash")
        .arg(dir.path().join("scripts/gen-prometheusrule.sh"))
        .output()
        .unwrap();
    assert!(regen.status.success());
    let regenerated: Vec<Value> = docs(&dir.path().join("deploy/kubernetes/prometheusrule.yaml"))
        .iter()
        .flat_map(|d| d["spec"]["groups"].as_array().unwrap().clone())
        .collect();
    assert_eq!(regenerated, alert_groups(dir.path()));
    assert!(regenerated.iter().any(|g| g["name"] == "extra"));
}

#[test]
fn systemd_unit_verifies_and_rates_at_most_2_5() {
    if !require_tool("systemd-analyze") {
        return;
    }
    let unit =
        std::fs::read_to_string(root().join("deploy/systemd/gpu-train-exporter.service")).unwrap();
    assert!(unit.contains("\nExecStart=/usr/local/bin/gpu-train-exporter "));
    // verify checks that ExecStart exists: point it at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpu-train-exporter.service");
    std::fs::write(
        &path,
        unit.replace(
            "ExecStart=/usr/local/bin/gpu-train-exporter",
            &format!("ExecStart={}", bin()),
        ),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for ").nth(1))
        .and_then(|rest| rest.split(": ").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {text}"));
    assert!(score <= 2.5, "exposure {score}\n{text}");
    for key in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "\nCapabilityBoundingSet=\n",
        "PrivateDevices=no",
        "DeviceAllow=/dev/nvidiactl r",
        "\nExecReload=/bin/kill -HUP $MAINPID\n",
    ] {
        assert!(unit.contains(key), "{key}");
    }

    // The environment file's flags start the daemon (listen address swapped for a free port).
    let env =
        std::fs::read_to_string(root().join("deploy/systemd/gpu-train-exporter.env")).unwrap();
    let args_line = env
        .lines()
        .find_map(|l| l.strip_prefix("GTE_ARGS="))
        .expect("GTE_ARGS=");
    let args: Vec<&str> = args_line
        .split_whitespace()
        .filter(|a| !a.starts_with("--web.listen-address"))
        .collect();
    assert!(args.iter().any(|a| a.starts_with("--log=")));
    let d = Daemon::start(&args);
    assert!(d.scrape().contains("gpu_train_exporter_build_info"));
}

#[test]
fn dockerfile_is_multi_stage_small_and_non_root() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("FROM "))
        .collect();
    assert!(froms.len() >= 2, "multi-stage");
    let last = &lines[*froms.last().unwrap()..];
    assert!(
        last[0].contains("distroless"),
        "small final image: {}",
        last[0]
    );
    let user = last
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in the final stage");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("numeric USER");
    assert_ne!(uid, 0);
    let copy = last
        .iter()
        .find(|l| l.starts_with("COPY --from="))
        .expect("the binary comes from the build stage");
    let dest = copy.split_whitespace().last().unwrap();
    let entry = last
        .iter()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .unwrap();
    assert!(
        entry.contains(&format!("\"{dest}\"")),
        "{entry} runs {dest}"
    );
    assert!(text.contains("--locked"));
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "target/"));
}

#[test]
fn compose_mounts_exist_and_prometheus_config_passes_promtool() {
    let dir = root().join("deploy/compose");
    let compose = docs(&dir.join("compose.yaml")).remove(0);
    let services = compose["services"].as_object().unwrap();
    for want in [
        "gpu-train-exporter",
        "prometheus",
        "alertmanager",
        "grafana",
    ] {
        assert!(services.contains_key(want), "{want}");
    }
    let named: Vec<&String> = compose["volumes"].as_object().unwrap().keys().collect();
    let mut checked = 0;
    for (name, svc) in services {
        if let Some(ctx) = svc["build"]["context"].as_str() {
            assert!(
                dir.join(ctx).join("Dockerfile").is_file(),
                "{name}: build context"
            );
        }
        for v in svc["volumes"].as_array().into_iter().flatten() {
            let spec = v.as_str().unwrap();
            let src = spec.split(':').next().unwrap();
            if named.iter().any(|n| n.as_str() == src) || src.starts_with('/') {
                continue; // a named volume, or a path on the node
            }
            let p = dir.join(src);
            // alerts/ and dashboards/ are their own parts of the repository; while one is
            // absent from this tree its mounts cannot be checked.
            let rel = p.canonicalize().unwrap_or(p.clone());
            let top = ["alerts", "dashboards"]
                .into_iter()
                .find(|t| src.starts_with(&format!("../../{t}")));
            if let Some(t) = top {
                if !root().join(t).exists() {
                    eprintln!("note: {t}/ is not in this tree; not checking {spec}");
                    continue;
                }
            }
            assert!(rel.exists(), "{name} mounts missing {src}");
            checked += 1;
        }
    }
    assert!(checked >= 3, "{checked}");

    if !require_tool("promtool") {
        return;
    }
    // Lay the files out as the prometheus container sees them, alerts/ included.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.join("prometheus.yml"),
        tmp.path().join("prometheus.yml"),
    )
    .unwrap();
    let alerts = root().join("alerts");
    if alerts.exists() {
        std::os::unix::fs::symlink(&alerts, tmp.path().join("alerts")).unwrap();
    }
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(tmp.path().join("prometheus.yml"))
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
    let rule_files = alert_groups(&root()).len();
    if rule_files > 0 {
        assert!(
            report.contains("SUCCESS") && report.contains("rules found"),
            "{report}"
        );
    }
    let prom = docs(&dir.join("prometheus.yml")).remove(0);
    assert!(prom["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|j| j["job_name"] == "gpu-train-exporter"));
}
