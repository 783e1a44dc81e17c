# IoMT edge gateway: one process, one SQLite file under /data, one HTTP port (1880).
#
# Native modules (better-sqlite3, @serialport/bindings-cpp) are compiled from source in the build
# stage with Debian's toolchain (python3, make, g++ from the bookworm archive) for the architecture
# being built: no prebuilt binary is downloaded (build_from_source makes prebuild-install and
# node-gyp-build skip their downloads / bundled prebuilds) and node-gyp uses the Node headers of the
# image (npm_config_nodedir) instead of fetching them. The build fails if a module did not compile.
# (npm_config_build_from_source is set as an environment variable, which the install scripts read
# directly: npm 10 warns that `--build-from-source` on its command line is an unknown option.)
# Checked outside Docker with the same commands and the network blocked (HTTPS_PROXY to a closed
# port): `npm rebuild` compiled both modules with g++ against /usr/include/node and they load.
#
# Multi-architecture (amd64 industrial PCs, arm64 Raspberry Pi 4/5), with Docker buildx:
#   docker buildx create --use            # once; arm64 on an amd64 host also needs binfmt:
#   docker run --privileged --rm tonistiigi/binfmt --install arm64
#   docker buildx build --platform linux/amd64,linux/arm64 -t registry.example/iomt-gateway:0.1.0 --push .
# Each platform runs its own build stage (arm64 under emulation on an amd64 host: slow, ~15 min).
# See docs/operations.md "Docker".
FROM node:22-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV npm_config_build_from_source=true \
    npm_config_nodedir=/usr/local \
    npm_config_fund=false \
    npm_config_audit=false
COPY package.json package-lock.json ./
COPY scripts ./scripts
# --ignore-scripts: no install script of any dependency runs (no downloads); the two native modules
# are then compiled explicitly. Their bundled prebuilds are removed first so that only the binary
# compiled here can be loaded.
RUN npm ci --ignore-scripts \
 && rm -rf node_modules/@serialport/bindings-cpp/prebuilds \
 && npm rebuild --foreground-scripts better-sqlite3 @serialport/bindings-cpp \
 && test -f node_modules/better-sqlite3/build/Release/better_sqlite3.node \
 && test -f node_modules/@serialport/bindings-cpp/build/Release/bindings.node \
 && node -e "new (require('better-sqlite3'))(':memory:').prepare('select 1').get(); require('@serialport/bindings-cpp').autoDetect()"
COPY . .
RUN npm run build && npm prune --omit=dev --ignore-scripts

FROM node:22-bookworm-slim
# udev: `udevadm` for the serial-port picker (vendor, model, /dev/serial/by-id); without it the
# picker falls back to listing /dev. openssl makes the first-start self-signed HTTPS certificate. In a container, by-id details need /run/udev from the host
# (balena: the io.balena.features.sysfs label in docker-compose.yml; docker: -v /run/udev:/run/udev:ro).
RUN apt-get update \
 && apt-get install -y --no-install-recommends udev tini openssl \
 && rm -rf /var/lib/apt/lists/*
# glibc returns big freed buffers (8 MB messages) to the system at once instead of keeping them in
# its arenas: ~100 MiB less peak RSS under 32 × 8 MB messages (docs/BENCHMARKS.md "Memory"). Read at start.
ENV NODE_ENV=production IOMT_DATA_DIR=/data IOMT_HTTP_PORT=1880 MALLOC_MMAP_THRESHOLD_=131072
WORKDIR /app
COPY --from=build /app /app
# dialout: access to USB-serial adapters for ASTM analyzers
RUN usermod -a -G dialout node && mkdir -p /data && chown node:node /data && chmod 0700 /data
VOLUME /data
# Ports the shipped flows listen on (flows/*.json, defaults; change them with the variables):
#   1880 HTTP: status page, editor, API, /readyz, /metrics   (IOMT_HTTP_PORT)
#   2575 HL7 v2 MLLP from analyzers                          (HL7_IN_PORT, flows/hl7-relay.json)
#   2577 HL7 v2 MLLP orders from the HIS/LIS                 (ORDERS_IN_PORT, flows/lab-astm-to-his.json)
#   5000 ASTM over TCP from analyzers                        (ASTM_TCP_PORT, flows/lab-astm-to-his.json)
#   2578 HL7 v2 MLLP imaging orders from the RIS             (RIS_ORDERS_PORT, flows/imaging.json)
#  11112 DICOM from modalities (storage, worklist, MPPS)     (DICOM_PORT, flows/imaging.json)
#   2579 HL7 v2 MLLP IHE PCD-01 from central stations        (PCD_IN_PORT, flows/icu-vitals.json)
#   1883 MQTT from bedside devices, 8883 MQTT over TLS       (MQTT_PORT, MQTTS_PORT, flows/icu-vitals.json)
# 2576 (HIS_PORT) is outbound: the gateway connects to the HIS; nothing listens on it.
EXPOSE 1880 2575 2577 5000 2578 11112 2579 1883 8883
USER node
# Ready = the store answers and every node started (/readyz: 503 while starting, when the store is
# unavailable or a node failed to start ("degraded"); /healthz only says the process is up).
# HTTPS unless IOMT_HTTP_INSECURE=true: off loopback the gateway serves HTTPS by default (its own or a
# self-signed certificate made with openssl on first start; not verified for this local probe). With
# IOMT_HTTP_TLS_REQUIRE_CLIENT_CERT the probe has no client certificate: use an orchestrator check instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD node -e "require(process.env.IOMT_HTTP_INSECURE==='true'?'http':'https').get({host:'127.0.0.1',port:process.env.IOMT_HTTP_PORT||1880,path:'/readyz',rejectUnauthorized:false,timeout:4000},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1)).on('timeout',()=>process.exit(1))"
# tini as PID 1: forwards SIGTERM (the gateway drains and closes the store) and reaps children.
ENTRYPOINT ["/usr/bin/tini", "--", "node", "dist/gateway/src/cli.js"]
CMD ["run"]
