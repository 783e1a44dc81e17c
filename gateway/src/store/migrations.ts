import { statSync } from 'node:fs';
import type { Database } from 'better-sqlite3';

export interface Migration {
  version: number;
  name: string;
  up: string;
}

/**
 * Versioned schema, applied in order; `PRAGMA user_version` holds the last applied version.
 * Never edit a released migration: append a new one.
 */
export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'messages (with observations), message keys, quarantine, outbox',
    up: `
      CREATE TABLE messages (
        id                INTEGER PRIMARY KEY AUTOINCREMENT,
        uid               TEXT    NOT NULL,              -- unique by construction (ids.ts); not indexed: nothing looks it up
        device_id         TEXT    NOT NULL,
        driver            TEXT    NOT NULL,
        message_type      TEXT,
        source_message_id TEXT,
        sender            TEXT,
        dedupe_key        TEXT,
        received_at       TEXT    NOT NULL,              -- ISO 8601 UTC (toISOString), sorts as text
        bytes             INTEGER NOT NULL,
        meta              TEXT,                          -- JSON, no PHI
        observation_count INTEGER NOT NULL DEFAULT 0,
        status            TEXT    NOT NULL DEFAULT 'committed' CHECK (status IN ('committed', 'routed', 'flow-error'))
      );
      CREATE UNIQUE INDEX messages_dedupe ON messages (device_id, dedupe_key) WHERE dedupe_key IS NOT NULL;
      -- Only messages whose flow has not finished (few: those in flight), in id order: a new message is
      -- appended at the end (one page per commit, whatever the number of devices), markFinished removes it.
      -- unfinished(deviceId) scans these few rows; search by device/status walks messages by id.
      CREATE INDEX messages_unfinished ON messages (id) WHERE status = 'committed';
      CREATE INDEX messages_received ON messages (received_at);

      -- The large, write-once parts of a message live apart from its small, updated metadata row, so that
      -- marking a message routed rewrites a few bytes, not the raw payload. Observations are one document per
      -- message (one insert per message, not one per result): a format byte, then the JSON of the draft array,
      -- deflated (codec.ts).
      CREATE TABLE message_bodies (
        message_id   INTEGER PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
        raw          BLOB    NOT NULL,
        observations BLOB    NOT NULL
      );

      -- Patient and specimen ids of each message, for search (one row per distinct value, not per observation).
      CREATE TABLE message_keys (
        message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        kind       TEXT    NOT NULL CHECK (kind IN ('patient', 'specimen')),
        value      TEXT    NOT NULL,
        PRIMARY KEY (message_id, kind, value)
      ) WITHOUT ROWID;
      CREATE INDEX message_keys_value ON message_keys (kind, value);

      CREATE TABLE quarantine (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        device_id   TEXT    NOT NULL,
        driver      TEXT    NOT NULL,
        reason      TEXT    NOT NULL,
        error_code  TEXT    NOT NULL,
        received_at TEXT    NOT NULL,
        bytes       INTEGER NOT NULL,
        raw         BLOB    NOT NULL,
        meta        TEXT
      );
      CREATE INDEX quarantine_received ON quarantine (received_at);

      CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        destination     TEXT    NOT NULL,
        key             TEXT    NOT NULL,
        message_id      INTEGER,                         -- informational: the message may be pruned before its settled rows
        payload         BLOB    NOT NULL,
        content_type    TEXT,
        state           TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,                -- epoch ms
        created_at      INTEGER NOT NULL,                -- epoch ms
        last_error      TEXT,
        delivered_at    INTEGER,
        dead_at         INTEGER,
        UNIQUE (destination, key)
      );
      CREATE INDEX outbox_dest_state_id ON outbox (destination, state, id);
      CREATE INDEX outbox_dest_state_due ON outbox (destination, state, next_attempt_at);
      CREATE INDEX outbox_message ON outbox (message_id, state) WHERE message_id IS NOT NULL;
      CREATE INDEX outbox_state_created ON outbox (state, created_at);
    `,
  },
  {
    version: 2,
    name: 'messages: control key (reused control ids), message flags, processing id',
    // ADD COLUMN with no default only changes the schema text: existing rows are not rewritten and read
    // the new columns as NULL. The unique dedupe index stays: a duplicate is still (device_id, dedupe_key).
    up: `
      ALTER TABLE messages ADD COLUMN control_key   TEXT;  -- sender|control id (MSH-3^MSH-4|MSH-10, ASTM H.5|H.3), no content hash
      ALTER TABLE messages ADD COLUMN flags         TEXT;  -- JSON array of message-level flags ('control-id-reused', ...); NULL = none
      ALTER TABLE messages ADD COLUMN processing_id TEXT;  -- MSH-11 / ASTM H.12 (P, T, D)
      -- Not unique: a reused control id with other content is stored (and flagged), not refused.
      CREATE INDEX messages_control ON messages (device_id, control_key) WHERE control_key IS NOT NULL;
      -- Flagged messages are few: searchMessages({ flag }) walks only these, newest first.
      CREATE INDEX messages_flagged ON messages (id) WHERE flags IS NOT NULL;
    `,
  },
  {
    version: 3,
    name: 'accounts (users with roles), hash-chained audit log, message lookup by uid',
    // Users hold bcrypt hashes only. The audit log is append-only: each row's hash is
    // SHA-256(previous row's hash + this row's canonical content) (gateway/src/audit/audit-log.ts);
    // pruning by age moves the anchor (the hash of the last pruned row) so the chain still verifies.
    up: `
      CREATE TABLE users (
        name          TEXT    PRIMARY KEY,
        role          TEXT    NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
        password_hash TEXT    NOT NULL,              -- bcrypt
        created_at    TEXT    NOT NULL,              -- ISO 8601 UTC
        password_changed_at TEXT NOT NULL
      );
      -- Small key/value facts of the account bootstrap (first admin, last applied env credential fingerprint).
      CREATE TABLE account_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
      ) WITHOUT ROWID;

      CREATE TABLE audit_log (
        id      INTEGER PRIMARY KEY,                 -- no AUTOINCREMENT needed: rows are only pruned from the oldest end
        at      TEXT    NOT NULL,                    -- ISO 8601 UTC
        actor   TEXT,                                -- user name, NULL for the system
        role    TEXT,
        action  TEXT    NOT NULL,                    -- e.g. login.ok, login.failed, deploy, user.add, phi.view
        target  TEXT,                                -- what was acted on (message id, user name, destination)
        detail  TEXT,                                -- JSON
        source  TEXT,                                -- client address (or 'cli')
        outcome TEXT    NOT NULL,                    -- ok | denied | failed
        hash    TEXT    NOT NULL                     -- hex SHA-256(prev hash + canonical content)
      );
      CREATE INDEX audit_log_at ON audit_log (at);
      -- One row: the chain start (genesis, or the hash of the last pruned row) and the id it follows.
      CREATE TABLE audit_anchor (
        one     INTEGER PRIMARY KEY CHECK (one = 1),
        last_id INTEGER NOT NULL,
        hash    TEXT    NOT NULL,
        pruned  INTEGER NOT NULL DEFAULT 0,          -- rows pruned by retention so far
        moved_at TEXT
      );
      INSERT INTO audit_anchor (one, last_id, hash) VALUES (1, 0, '${'0'.repeat(64)}');

      -- GET /api/v1/messages/:uid looks a message up by its uid.
      CREATE INDEX messages_uid ON messages (uid);
    `,
  },
  {
    version: 4,
    name: 'DICOM instances by accession number and by study (issue 11)',
    // A stored DICOM instance is a message of driver 'dicom', type 'C-STORE', whose meta is its
    // DicomInstanceRecord (drivers/dicom/contracts.ts). Partial expression indexes: only those rows
    // are indexed (json_extract is deterministic; other messages cost one WHERE test on insert), and
    // a query with the same WHERE terms and expression (GET /api/v1/studies) uses them instead of
    // scanning every message's JSON. Creating them reads the existing dicom rows once.
    up: `
      CREATE INDEX messages_dicom_accession ON messages (json_extract(meta, '$.accessionNumber'))
        WHERE driver = 'dicom' AND message_type = 'C-STORE';
      CREATE INDEX messages_dicom_study ON messages (json_extract(meta, '$.studyInstanceUid'))
        WHERE driver = 'dicom' AND message_type = 'C-STORE';
    `,
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1].version;

/**
 * Connection settings + migrations. `auto_vacuum` is a property of the file that can only be chosen
 * before the first table exists, so it is set first; an older file without it is converted once with VACUUM.
 */
export function prepareDatabase(db: Database, opts: { busyTimeoutMs?: number } = {}): { from: number; to: number; vacuumed: boolean } {
  const tables = db.prepare(`SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'`).get() as { n: number };
  let vacuumed = false;
  if (tables.n === 0) {
    db.pragma('auto_vacuum = INCREMENTAL');
  } else if (Number(db.pragma('auto_vacuum', { simple: true })) !== 2) {
    db.pragma('auto_vacuum = INCREMENTAL');
    db.exec('VACUUM'); // rewrites the file; required to switch auto_vacuum on an existing database
    vacuumed = true;
  }
  db.pragma('journal_mode = WAL');
  configureConnection(db, opts);

  const from = Number(db.pragma('user_version', { simple: true }));
  if (from > SCHEMA_VERSION) throw new Error(`database schema version ${from} is newer than this gateway (${SCHEMA_VERSION})`);
  for (const m of MIGRATIONS) {
    if (m.version <= from) continue;
    db.transaction(() => {
      db.exec(m.up);
      db.pragma(`user_version = ${m.version}`);
    })();
  }
  return { from, to: SCHEMA_VERSION, vacuumed };
}

/**
 * Per-connection settings (the file itself is already in WAL mode): every connection, the main
 * thread's reader and the writer worker's connection, runs these.
 */
export function configureConnection(db: Database, opts: { busyTimeoutMs?: number } = {}): void {
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  db.pragma(`busy_timeout = ${Math.max(0, Math.floor(opts.busyTimeoutMs ?? 5000))}`);
  // savepoint sub-journals (one per group-commit op) in memory, not in a temp file
  db.pragma('temp_store = MEMORY');
}

/** Bytes on disk of the database: the main file plus its WAL (absent until the first write). */
export function databaseFileBytes(file: string): number {
  let n = 0;
  for (const f of [file, `${file}-wal`]) {
    try {
      n += statSync(f).size;
    } catch {
      /* no WAL yet */
    }
  }
  return n;
}
