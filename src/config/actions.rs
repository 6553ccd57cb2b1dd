//! The `alertmanager:` and `actions:` sections, validated into
//! [`ActionsOptions`](crate::actions::ActionsOptions): every error names its key
//! (`actions[1].signal`, `alertmanager.tls_config.ca_file`), the credential and TLS files are
//! read now so that a typo is found by `check-config` and not at 3 a.m., and an `exec`
//! command must exist.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::{ActionFile, AlertmanagerFile, ClientTlsFile};
use super::{duration, invalid, millis, read_regular, secs, ConfigError, HOUR};
use crate::actions::act::signal_number;
use crate::actions::alertmanager::{AlertmanagerOptions, Auth, Client, ClientTls, Secret};
use crate::actions::matcher::Matcher;
use crate::actions::{Action, ActionsOptions, Do};

/// The largest PEM or credentials file read.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// `None` when no action is configured.
pub fn build(
    am: Option<&AlertmanagerFile>,
    actions: &[ActionFile],
    procfs: &Path,
) -> Result<Option<ActionsOptions>, ConfigError> {
    if actions.is_empty() {
        return Ok(None);
    }
    let Some(am) = am else {
        return Err(invalid(
            "alertmanager.url",
            "the actions need an Alertmanager to poll: set alertmanager.url",
        ));
    };
    let alertmanager = alertmanager(am)?;
    let mut names = BTreeSet::new();
    let mut out = Vec::with_capacity(actions.len());
    for (i, a) in actions.iter().enumerate() {
        let action = action(i, a)?;
        if !names.insert(action.name.clone()) {
            return Err(invalid(
                format!("actions[{i}].name"),
                format!("{:?} is the name of an earlier action", action.name),
            ));
        }
        out.push(action);
    }
    Ok(Some(ActionsOptions {
        alertmanager,
        actions: out,
        procfs: procfs.to_path_buf(),
    }))
}

fn alertmanager(am: &AlertmanagerFile) -> Result<AlertmanagerOptions, ConfigError> {
    let urls = match (&am.url, &am.urls) {
        (Some(_), Some(_)) => {
            return Err(invalid("alertmanager.urls", "give url or urls, not both"))
        }
        (Some(u), None) => vec![base_url(u).map_err(|m| invalid("alertmanager.url", m))?],
        (None, Some(us)) if !us.is_empty() => us
            .iter()
            .enumerate()
            .map(|(i, u)| base_url(u).map_err(|m| invalid(format!("alertmanager.urls[{i}]"), m)))
            .collect::<Result<_, _>>()?,
        _ => return Err(invalid("alertmanager.url", "is missing (http://host:9093)")),
    };
    let poll_interval = match &am.poll_interval {
        Some(d) => {
            duration(d, secs(1)..=HOUR).map_err(|m| invalid("alertmanager.poll_interval", m))?
        }
        None => secs(5),
    };
    let timeout = match &am.timeout {
        Some(d) => {
            duration(d, millis(100)..=secs(60)).map_err(|m| invalid("alertmanager.timeout", m))?
        }
        None => secs(10),
    };
    let auth = auth(am)?;
    let tls = match &am.tls_config {
        Some(t) => tls(t)?,
        None => ClientTls::default(),
    };
    if tls != ClientTls::default() && !urls.iter().all(|u| u.starts_with("https://")) {
        return Err(invalid(
            "alertmanager.tls_config",
            "is set, but not every URL is https://",
        ));
    }
    let options = AlertmanagerOptions {
        urls,
        poll_interval,
        timeout,
        auth,
        tls,
    };
    Client::new(options.clone()).map_err(|m| invalid("alertmanager", m))?;
    Ok(options)
}

/// `http://host:port[/prefix]`, without its trailing slash.
fn base_url(u: &str) -> Result<String, String> {
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"))
        .ok_or_else(|| format!("{u:?} is not an http:// or https:// URL"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.contains(['?', '#', ' ', '@']) || rest.contains(['?', '#']) {
        return Err(format!(
            "{u:?}: expected http://host:port with an optional path prefix (no query, no user)"
        ));
    }
    Ok(u.trim_end_matches('/').to_string())
}

/// A file that must be readable now, read again at each poll.
fn secret_file(p: &Path, key: &str) -> Result<Secret, ConfigError> {
    pem(p, key)?;
    Ok(Secret::File(p.to_path_buf()))
}

fn auth(am: &AlertmanagerFile) -> Result<Option<Auth>, ConfigError> {
    let given = [
        am.basic_auth.is_some(),
        am.bearer_token_file.is_some(),
        am.authorization.is_some(),
    ];
    if given.iter().filter(|&&g| g).count() > 1 {
        return Err(invalid(
            "alertmanager",
            "give one of basic_auth, bearer_token_file and authorization",
        ));
    }
    if let Some(b) = &am.basic_auth {
        let username = b
            .username
            .clone()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| invalid("alertmanager.basic_auth.username", "is missing"))?;
        let password = match (&b.password, &b.password_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "alertmanager.basic_auth.password_file",
                    "give password or password_file, not both",
                ))
            }
            (Some(p), None) => Secret::Inline(p.clone()),
            (None, Some(f)) => secret_file(f, "alertmanager.basic_auth.password_file")?,
            (None, None) => Secret::Inline(String::new()),
        };
        return Ok(Some(Auth::Basic { username, password }));
    }
    if let Some(f) = &am.bearer_token_file {
        return Ok(Some(Auth::Header {
            kind: "Bearer".into(),
            credentials: secret_file(f, "alertmanager.bearer_token_file")?,
        }));
    }
    if let Some(a) = &am.authorization {
        let kind = a.kind.clone().unwrap_or_else(|| "Bearer".into());
        if kind.is_empty() || !kind.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
            return Err(invalid(
                "alertmanager.authorization.type",
                format!("{kind:?} is not an authorization scheme such as Bearer"),
            ));
        }
        let credentials = match (&a.credentials, &a.credentials_file) {
            (Some(c), None) => Secret::Inline(c.clone()),
            (None, Some(f)) => secret_file(f, "alertmanager.authorization.credentials_file")?,
            _ => {
                return Err(invalid(
                    "alertmanager.authorization.credentials_file",
                    "give one of credentials and credentials_file",
                ))
            }
        };
        return Ok(Some(Auth::Header { kind, credentials }));
    }
    Ok(None)
}

/// A small file's bytes (PEM or a credential), read now; errors name `key`.
fn pem(p: &Path, key: &str) -> Result<Vec<u8>, ConfigError> {
    read_regular(p, MAX_PEM_BYTES).map_err(|e| invalid(key, format!("{}: {e}", p.display())))
}

fn tls(t: &ClientTlsFile) -> Result<ClientTls, ConfigError> {
    let ca_pem = t
        .ca_file
        .as_deref()
        .map(|p| pem(p, "alertmanager.tls_config.ca_file"))
        .transpose()?;
    let client = match (&t.cert_file, &t.key_file) {
        (Some(c), Some(k)) => Some((
            pem(c, "alertmanager.tls_config.cert_file")?,
            pem(k, "alertmanager.tls_config.key_file")?,
        )),
        (None, None) => None,
        (Some(_), None) => {
            return Err(invalid(
                "alertmanager.tls_config.key_file",
                "is missing (cert_file is set)",
            ))
        }
        (None, Some(_)) => {
            return Err(invalid(
                "alertmanager.tls_config.cert_file",
                "is missing (key_file is set)",
            ))
        }
    };
    Ok(ClientTls {
        ca_pem,
        client,
        insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
    })
}

fn action(i: usize, a: &ActionFile) -> Result<Action, ConfigError> {
    let key = |k: &str| format!("actions[{i}].{k}");
    let name = a
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| invalid(key("name"), "is missing (each action needs a name)"))?;
    if a.matchers.is_empty() {
        return Err(invalid(
            key("match"),
            "is missing: at least one matcher, such as 'alertname=\"TrainingLossNaN\"'",
        ));
    }
    let matchers = a
        .matchers
        .iter()
        .enumerate()
        .map(|(j, m)| Matcher::parse(m).map_err(|e| invalid(format!("actions[{i}].match[{j}]"), e)))
        .collect::<Result<Vec<_>, _>>()?;
    let runs = match &a.runs {
        None => vec![glob::Pattern::new("*").expect("a valid glob")],
        Some(rs) if rs.is_empty() => {
            return Err(invalid(key("runs"), "is empty: no run would match"))
        }
        Some(rs) => rs
            .iter()
            .enumerate()
            .map(|(j, g)| {
                glob::Pattern::new(g)
                    .map_err(|e| invalid(format!("actions[{i}].runs[{j}]"), format!("{g:?}: {e}")))
            })
            .collect::<Result<_, _>>()?,
    };
    let what_name = a
        .what
        .as_deref()
        .ok_or_else(|| invalid(key("do"), "is missing: pause, terminate, signal or exec"))?;
    let only = |set: bool, k: &str, for_what: &str| -> Result<(), ConfigError> {
        if set {
            return Err(invalid(key(k), format!("applies only to do: {for_what}")));
        }
        Ok(())
    };
    let what = match what_name {
        "pause" => Do::Pause,
        "terminate" => Do::Terminate {
            grace: match &a.grace_period {
                Some(d) => {
                    duration(d, secs(1)..=HOUR).map_err(|m| invalid(key("grace_period"), m))?
                }
                None => secs(30),
            },
        },
        "signal" => {
            let s = a.signal.as_deref().ok_or_else(|| {
                invalid(
                    key("signal"),
                    "is missing (do: signal needs one, such as SIGUSR1)",
                )
            })?;
            Do::Signal {
                signal: signal_number(s).ok_or_else(|| {
                    invalid(
                        key("signal"),
                        format!(
                            "{s:?} is not a signal name (SIGUSR1, SIGUSR2, SIGTERM, SIGINT, ...)"
                        ),
                    )
                })?,
            }
        }
        "exec" => {
            let argv = a.exec.clone().unwrap_or_default();
            if argv.is_empty() || argv[0].is_empty() {
                return Err(invalid(key("exec"), "is missing: [command, arg, ...]"));
            }
            check_command(&argv[0]).map_err(|m| invalid(key("exec"), m))?;
            Do::Exec {
                argv,
                timeout: match &a.timeout {
                    Some(d) => {
                        duration(d, millis(100)..=HOUR).map_err(|m| invalid(key("timeout"), m))?
                    }
                    None => secs(30),
                },
            }
        }
        other => {
            return Err(invalid(
                key("do"),
                format!("unknown action {other:?}: expected pause, terminate, signal or exec"),
            ))
        }
    };
    only(
        a.signal.is_some() && what_name != "signal",
        "signal",
        "signal",
    )?;
    only(a.exec.is_some() && what_name != "exec", "exec", "exec")?;
    only(
        a.timeout.is_some() && what_name != "exec",
        "timeout",
        "exec",
    )?;
    only(
        a.grace_period.is_some() && what_name != "terminate",
        "grace_period",
        "terminate",
    )?;
    let resume_on_resolve = a.resume_on_resolve.unwrap_or(false);
    only(
        resume_on_resolve && !matches!(what, Do::Pause | Do::Exec { .. }),
        "resume_on_resolve",
        "pause or exec (a terminated run cannot be resumed)",
    )?;
    let cooldown = match a.cooldown.as_deref() {
        None => secs(300),
        Some("0" | "0s") => Duration::ZERO,
        Some(d) => duration(d, secs(1)..=super::YEAR).map_err(|m| invalid(key("cooldown"), m))?,
    };
    Ok(Action {
        name,
        matchers,
        runs,
        what,
        resume_on_resolve,
        dry_run: a.dry_run.unwrap_or(false),
        cooldown,
    })
}

/// An `exec` command must exist: a path to an executable file, or a name found on `PATH`.
fn check_command(cmd: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if cmd.contains('/') {
        if executable(Path::new(cmd)) {
            return Ok(());
        }
        return Err(format!("{cmd}: no such executable file"));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|d: PathBuf| executable(&d.join(cmd))) {
        return Ok(());
    }
    Err(format!("{cmd}: not found on PATH"))
}

#[cfg(test)]
mod tests {
    use super::super::file::parse_file;
    use super::*;

    fn build_yaml(yaml: &str) -> Result<Option<ActionsOptions>, String> {
        let f = parse_file(yaml)?;
        build(f.alertmanager.as_ref(), &f.actions, Path::new("/proc")).map_err(|e| e.to_string())
    }

    const AM: &str = "alertmanager:\n  url: http://127.0.0.1:9093/\n";

    #[test]
    fn a_full_action_list_is_built() {
        let o = build_yaml(&format!(
            "{AM}  poll_interval: 2s\nactions:\n  - name: pause-on-nan\n    match: ['alertname=\"TrainingLossNaN\"', 'severity=~\"critical|page\"']\n    runs: ['sft-*']\n    do: pause\n    resume_on_resolve: true\n  - name: ckpt\n    match: [alertname=TrainingStalled]\n    do: signal\n    signal: usr1\n    cooldown: 0s\n  - name: stop\n    match: [alertname=X]\n    do: terminate\n    grace_period: 5s\n    dry_run: true\n  - name: hand-off\n    match: [alertname=Y]\n    do: exec\n    exec: [sh, -c, 'echo $GTE_RUN']\n"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(o.alertmanager.urls, ["http://127.0.0.1:9093"]);
        assert_eq!(o.alertmanager.poll_interval, secs(2));
        assert_eq!(o.actions.len(), 4);
        assert_eq!(o.actions[0].what, Do::Pause);
        assert!(o.actions[0].resume_on_resolve);
        assert_eq!(o.actions[0].matchers.len(), 2);
        assert_eq!(o.actions[0].cooldown, secs(300));
        assert_eq!(
            o.actions[1].what,
            Do::Signal {
                signal: libc::SIGUSR1
            }
        );
        assert_eq!(o.actions[1].cooldown, Duration::ZERO);
        assert_eq!(o.actions[2].what, Do::Terminate { grace: secs(5) });
        assert!(o.actions[2].dry_run);
        assert!(
            matches!(&o.actions[3].what, Do::Exec { argv, timeout } if argv[0] == "sh" && *timeout == secs(30))
        );
        assert_eq!(build_yaml(AM).unwrap().map(|o| o.actions.len()), None);
    }

    #[test]
    fn errors_name_the_key() {
        let one =
            |body: &str| build_yaml(&format!("{AM}actions:\n  - name: a\n{body}")).unwrap_err();
        for (body, key) in [
            ("    match: [alertname=A]\n    do: pauze\n", "actions[0].do: unknown action \"pauze\""),
            ("    match: [alertname=A]\n", "actions[0].do: is missing"),
            ("    do: pause\n", "actions[0].match: is missing"),
            ("    match: [alertname=A, 'x>1']\n    do: pause\n", "actions[0].match[1]:"),
            ("    match: [alertname=A]\n    do: signal\n    signal: SIGFOO\n", "actions[0].signal: \"SIGFOO\" is not a signal"),
            ("    match: [alertname=A]\n    do: signal\n", "actions[0].signal: is missing"),
            ("    match: [alertname=A]\n    do: pause\n    signal: SIGUSR1\n", "actions[0].signal: applies only to do: signal"),
            ("    match: [alertname=A]\n    do: exec\n    exec: [/no/such/cmd]\n", "actions[0].exec: /no/such/cmd: no such executable"),
            ("    match: [alertname=A]\n    do: exec\n    exec: [no-such-cmd-anywhere]\n", "actions[0].exec: no-such-cmd-anywhere: not found on PATH"),
            ("    match: [alertname=A]\n    do: exec\n", "actions[0].exec: is missing"),
            ("    match: [alertname=A]\n    do: terminate\n    resume_on_resolve: true\n", "actions[0].resume_on_resolve"),
            ("    match: [alertname=A]\n    do: pause\n    runs: ['[']\n", "actions[0].runs[0]"),
            ("    match: [alertname=A]\n    do: pause\n    cooldown: soon\n", "actions[0].cooldown"),
            ("    match: [alertname=A]\n    do: pause\n  - name: a\n    match: [alertname=B]\n    do: pause\n", "actions[1].name"),
        ] {
            assert!(one(body).starts_with(key), "{body}: {}", one(body));
        }
        let no_am = build_yaml("actions:\n  - name: a\n    match: [alertname=A]\n    do: pause\n")
            .unwrap_err();
        assert!(no_am.starts_with("alertmanager.url:"), "{no_am}");
        let act = "actions:\n  - name: a\n    match: [alertname=A]\n    do: pause\n";
        for (am, key) in [
            ("alertmanager:\n  url: ftp://x\n", "alertmanager.url:"),
            (
                "alertmanager:\n  urls: [http://a:1, 'http://b?x']\n",
                "alertmanager.urls[1]:",
            ),
            (
                "alertmanager:\n  url: http://a:1\n  poll_interval: 1ms\n",
                "alertmanager.poll_interval:",
            ),
            (
                "alertmanager:\n  url: http://a:1\n  bearer_token_file: /no/such/token\n",
                "alertmanager.bearer_token_file:",
            ),
            (
                "alertmanager:\n  url: http://a:1\n  basic_auth: {password: x}\n",
                "alertmanager.basic_auth.username:",
            ),
            (
                "alertmanager:\n  url: https://a:1\n  tls_config: {ca_file: /no/such/ca.pem}\n",
                "alertmanager.tls_config.ca_file:",
            ),
            (
                "alertmanager:\n  url: http://a:1\n  tls_config: {insecure_skip_verify: true}\n",
                "alertmanager.tls_config:",
            ),
        ] {
            let e = build_yaml(&format!("{am}{act}")).unwrap_err();
            assert!(e.starts_with(key), "{am}: {e}");
        }
        // a type error in the file itself names the key too
        let e = parse_file("actions:\n  - name: a\n    dry_run: maybe\n").unwrap_err();
        assert!(e.contains("actions[0].dry_run"), "{e}");
        let e = parse_file("actions:\n  - name: a\n    sleep: 3\n").unwrap_err();
        assert!(e.contains("sleep"), "{e}");
    }
}
