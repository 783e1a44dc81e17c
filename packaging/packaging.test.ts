import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Packaging checks (issue 9 §5) that can run without a container engine: the systemd unit through
 * systemd's own parser (`systemd-analyze verify` / `security --offline`), the Dockerfile's ports
 * against the shipped flows, its health check and native build flags, the .dockerignore, balena.yml.
 * Run: npx vitest run --config packaging/vitest.config.ts
 */
const root = join(__dirname, '..');
const unitFile = join(root, 'packaging/systemd/iomt-gateway.service');
const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');

function systemdAnalyze(args: string[]): { status: number | null; out: string } {
  const r = spawnSync('systemd-analyze', args, { encoding: 'utf8', cwd: tmpdir() });
  if (r.error) throw new Error(`systemd-analyze is required (apt-get install systemd): ${r.error.message}`);
  return { status: r.status, out: `${r.stdout}${r.stderr}`.trim() };
}

/** [Section] → key → values (a key may repeat), comments and blank lines dropped. */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const out = new Map<string, Map<string, string[]>>();
  let sec = '';
  for (const line of text.split('\n').map((l) => l.trim())) {
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) {
      sec = s[1];
      out.set(sec, new Map());
      continue;
    }
    const i = line.indexOf('=');
    const k = line.slice(0, i);
    const m = out.get(sec)!;
    m.set(k, [...(m.get(k) ?? []), line.slice(i + 1)]);
  }
  return out;
}

/** Default listening ports of the shipped flows: `${VAR:-port}` of every node that listens. */
function listeningPortsOfFlows(): Map<number, string> {
  const ports = new Map<number, string>();
  const def = (v: unknown) => {
    const m = /^\$\{(\w+):-(\d+)\}$/.exec(String(v ?? ''));
    return m ? { name: m[1], port: Number(m[2]) } : /^\d+$/.test(String(v ?? '')) ? { name: 'literal', port: Number(v) } : undefined;
  };
  for (const f of readdirSync(join(root, 'flows')).filter((x) => x.endsWith('.json'))) {
    for (const n of JSON.parse(readFileSync(join(root, 'flows', f), 'utf8')) as Array<Record<string, unknown>>) {
      let p: ReturnType<typeof def>;
      if (n.type === 'iomt-hl7-in' || n.type === 'iomt-dicom-in' || n.type === 'iomt-mqtt-broker') p = def(n.port);
      else if (n.type === 'iomt-astm-device' && n.transport === 'tcp-server') p = def(n.tcpPort);
      if (p) ports.set(p.port, `${f}: ${String(n.type)} (${p.name})`);
      const tlsPort = n.type === 'iomt-mqtt-broker' ? def(n.tlsPort) : undefined;
      if (tlsPort) ports.set(tlsPort.port, `${f}: ${String(n.type)} TLS (${tlsPort.name})`);
    }
  }
  return ports;
}

describe('systemd unit', () => {
  it('passes systemd-analyze verify with no warning', () => {
    const r = systemdAnalyze(['verify', unitFile]);
    expect(r.out).toBe('');
    expect(r.status).toBe(0);
  });

  it('the same check fails on a broken copy (unknown key, missing program)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'iomt-unit-'));
    try {
      const bad = join(dir, 'iomt-gateway.service');
      writeFileSync(bad, readFileSync(unitFile, 'utf8').replace('ProtectSystem=strict', 'ProtectSystm=strict').replace('/usr/bin/env node', '/nonexistent/node'));
      const r = systemdAnalyze(['verify', bad]);
      expect(r.out).toMatch(/Unknown key .?ProtectSystm/);
      expect(r.out).toMatch(/nonexistent\/node/);
      expect(r.status).not.toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('exposure level at most 2.0 ("OK") by systemd-analyze security --offline', () => {
    const r = systemdAnalyze(['security', '--offline=yes', '--threshold=20', unitFile]);
    expect(r.out).toMatch(/Overall exposure level for iomt-gateway\.service: (0\.\d|1\.\d|2\.0) /);
    expect(r.status).toBe(0);
  });

  const unit = parseUnit(readFileSync(unitFile, 'utf8'));
  const svc = unit.get('Service')!;
  const cases: Array<[string, (v: string[] | undefined) => boolean]> = [
    ['NoNewPrivileges', (v) => v?.at(-1) === 'yes'],
    ['ProtectSystem', (v) => v?.at(-1) === 'strict'],
    ['ProtectHome', (v) => v?.at(-1) === 'yes'],
    ['PrivateTmp', (v) => v?.at(-1) === 'yes'],
    ['CapabilityBoundingSet', (v) => v?.at(-1) === ''],
    ['AmbientCapabilities', (v) => v?.at(-1) === ''],
    ['SupplementaryGroups', (v) => !!v?.join(' ').split(/\s+/).includes('dialout')],
    ['RestrictAddressFamilies', (v) => !!v && !v.join(' ').includes('AF_PACKET') && v.join(' ').includes('AF_INET')],
    ['ReadWritePaths', (v) => !!v?.join(' ').split(/\s+/).includes('/var/lib/iomt-gateway')],
    ['Environment', (v) => !!v?.includes('IOMT_DATA_DIR=/var/lib/iomt-gateway')],
    ['StateDirectory', (v) => v?.at(-1) === 'iomt-gateway'],
    ['User', (v) => !!v?.at(-1) && v.at(-1) !== 'root'],
    ['UMask', (v) => v?.at(-1) === '0077'],
  ];
  for (const [key, ok] of cases) {
    it(`[Service] ${key}`, () => {
      expect(ok(svc.get(key)), `${key}=${String(svc.get(key))}`).toBe(true);
    });
  }

  it('the sysusers file creates the same user, in group dialout', () => {
    const text = readFileSync(join(root, 'packaging/systemd/iomt-gateway.sysusers'), 'utf8');
    const user = svc.get('User')!.at(-1)!;
    expect(text).toMatch(new RegExp(`^u ${user} `, 'm'));
    expect(text).toMatch(new RegExp(`^m ${user} dialout$`, 'm'));
  });
});

describe('Dockerfile', () => {
  const exposed = new Set(
    dockerfile
      .split('\n')
      .filter((l) => /^EXPOSE\s/.test(l))
      .flatMap((l) => l.replace(/^EXPOSE\s+/, '').split(/\s+/))
      .map((p) => Number(p.replace(/\/tcp$/, ''))),
  );

  it('exposes the HTTP port and every port a shipped flow listens on', () => {
    const flows = listeningPortsOfFlows();
    expect(flows.size).toBeGreaterThanOrEqual(3); // 2575, 2577, 5000 today: the flows were read
    const missing = [...flows].filter(([p]) => !exposed.has(p)).map(([p, what]) => `${p} (${what})`);
    expect(missing).toEqual([]);
    expect(exposed.has(Number(/IOMT_HTTP_PORT=(\d+)/.exec(dockerfile)?.[1]))).toBe(true);
  });

  it('checks health on /readyz, not /healthz', () => {
    const hc = dockerfile.split('\n').findIndex((l) => l.startsWith('HEALTHCHECK'));
    expect(hc).toBeGreaterThan(-1);
    const text = dockerfile.split('\n').slice(hc, hc + 3).join('\n');
    expect(text).toMatch(/\/readyz/);
    expect(text).not.toMatch(/\/healthz/);
  });

  it('compiles the native modules from source (no prebuilt download), runs as a non-root user', () => {
    expect(dockerfile).toMatch(/npm ci --ignore-scripts/);
    expect(dockerfile).toMatch(/npm rebuild [^\n]*better-sqlite3[^\n]*@serialport\/bindings-cpp/);
    expect(dockerfile).toMatch(/npm_config_nodedir=\/usr\/local/); // the image's own Node headers, not downloaded
    expect(dockerfile).toMatch(/npm_config_build_from_source=true/);
    expect(dockerfile).toMatch(/rm -rf node_modules\/@serialport\/bindings-cpp\/prebuilds/);
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(dockerfile).toMatch(/IOMT_DATA_DIR=\/data/);
  });
});

describe('.dockerignore', () => {
  const lines = readFileSync(join(root, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  for (const must of ['node_modules', 'dist', 'data', '.git', '.tmp', '**/*.db', '**/admin-password.txt', '**/.node-red-secret']) {
    it(`excludes ${must}`, () => expect(lines).toContain(must));
  }
  it('keeps what the build needs', () => {
    for (const keep of ['package.json', 'package-lock.json', 'tsconfig.json', 'gateway', 'drivers', 'flows', 'firmware-config', 'scripts']) expect(lines).not.toContain(keep);
  });
});

describe('balena.yml and docker-compose.yml', () => {
  const yaml = createRequire(__filename)('js-yaml') as { load: (s: string) => unknown };
  const balena = yaml.load(readFileSync(join(root, 'balena.yml'), 'utf8')) as { name: string; description: string; data: { supportedDeviceTypes: string[]; defaultDeviceType: string }; 'post-provisioning': string };
  const settingsSrc = readFileSync(join(root, 'gateway/src/config/settings.ts'), 'utf8');
  const flowsSrc = readdirSync(join(root, 'flows')).map((f) => readFileSync(join(root, 'flows', f), 'utf8')).join('\n');

  it('names only variables the gateway or its shipped flows read', () => {
    const vars = [...new Set(`${balena.description} ${balena['post-provisioning']}`.match(/\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b/g) ?? [])];
    expect(vars.length).toBeGreaterThan(3);
    const unknown = vars.filter((v) => !settingsSrc.includes(`'${v}'`) && !flowsSrc.includes(`\${${v}`));
    expect(unknown).toEqual([]);
  });

  it('claims only what exists: no DICOM or MQTT driver is shipped', () => {
    const drivers = readdirSync(join(root, 'drivers'), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
    for (const absent of ['dicom', 'mqtt']) {
      if (!drivers.some((d) => d.includes(absent))) expect(balena.description.toLowerCase()).not.toContain(absent);
    }
    expect(balena.data.supportedDeviceTypes).toContain(balena.data.defaultDeviceType);
  });

  it('docker-compose keeps the data volume where the image keeps its data dir', () => {
    const compose = yaml.load(readFileSync(join(root, 'docker-compose.yml'), 'utf8')) as { services: Record<string, { volumes: string[] }> };
    const vols = Object.values(compose.services).flatMap((s) => s.volumes);
    expect(vols.some((v) => v.endsWith(':/data'))).toBe(true);
  });
});
