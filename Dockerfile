# IoMT edge gateway: one process, one SQLite file under /data, one HTTP port (1880).
# Builds native modules (better-sqlite3, serialport) from source for the target architecture
# (amd64 industrial PCs and arm64 Raspberry Pi).
FROM node:22-bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
COPY scripts ./scripts
RUN npm ci --ignore-scripts && npm rebuild better-sqlite3 @serialport/bindings-cpp
COPY . .
RUN npm run build && npm prune --omit=dev

FROM node:22-bookworm-slim
ENV NODE_ENV=production IOMT_DATA_DIR=/data IOMT_HTTP_PORT=1880
WORKDIR /app
COPY --from=build /app /app
VOLUME /data
EXPOSE 1880 2575
# dialout: access to USB-serial adapters for ASTM analyzers
RUN usermod -a -G dialout node && mkdir -p /data && chown node:node /data
USER node
HEALTHCHECK --interval=30s --timeout=5s CMD node -e "fetch('http://127.0.0.1:'+(process.env.IOMT_HTTP_PORT||1880)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["node", "dist/gateway/src/cli.js"]
CMD ["run"]
