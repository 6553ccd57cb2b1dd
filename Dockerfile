# gpu-train-exporter container image.
#   docker build --build-arg GTE_REVISION=$(git rev-parse --short=12 HEAD) -t gpu-train-exporter .
# Stage 1 builds a release binary; stage 2 is distroless (glibc, no shell, no package
# manager) running as an unprivileged user. The NVIDIA container runtime mounts
# libnvidia-ml and the /dev/nvidia* devices in at run time (NVIDIA_DRIVER_CAPABILITIES
# =utility), so the image holds no driver.

FROM docker.io/library/rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The git revision for gpu_train_exporter_build_info (.git is not in the context).
ARG GTE_REVISION=unknown
ENV GTE_REVISION=${GTE_REVISION}
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin gpu-train-exporter \
    && install -D -s target/release/gpu-train-exporter /out/gpu-train-exporter

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/gpu-train-exporter /usr/local/bin/gpu-train-exporter
# 65532 is distroless's "nonroot"; numeric so that runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 9842
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=utility
ENTRYPOINT ["/usr/local/bin/gpu-train-exporter"]
