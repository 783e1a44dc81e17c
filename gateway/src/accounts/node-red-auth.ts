import { recordAudit } from '../audit/audit-log';
import type { UserStore } from './users';

export interface NodeRedUser {
  username: string;
  permissions: '*';
}

/** Node-RED's `adminAuth` setting with custom user functions (Node-RED docs: "Securing Node-RED", custom user authentication). */
export interface NodeRedAdminAuth {
  type: 'credentials';
  users(username: string): Promise<NodeRedUser | null>;
  authenticate(username: string, password: string): Promise<NodeRedUser | null>;
}

/**
 * The editor login (issue 9 §3: the editor is for admins only) against the users table:
 * `authenticate` accepts only users with role admin (verifyUser, bcryptjs async); `users`, which
 * Node-RED calls for every request with a token, answers only while the user is still an admin, so
 * removing or demoting a user closes the editor to them at once. Every editor login attempt is
 * audited (source 'editor': Node-RED does not hand the client address to these functions).
 */
export function nodeRedAdminAuth(users: UserStore): NodeRedAdminAuth {
  return {
    type: 'credentials',
    users: async (username) => (users.get(username)?.role === 'admin' ? { username, permissions: '*' } : null),
    authenticate: async (username, password) => {
      const p = await users.verifyUser(username, password);
      const ok = p?.role === 'admin';
      recordAudit({
        action: ok ? 'login.ok' : 'login.failed',
        user: typeof username === 'string' ? username.slice(0, 64) : undefined,
        role: p?.role,
        source: 'editor',
        outcome: ok ? 'ok' : p ? 'denied' : 'failed',
        detail: { via: 'editor', ...(p && !ok ? { reason: 'the editor is for admins only' } : {}) },
      });
      return ok ? { username: p.user, permissions: '*' } : null;
    },
  };
}
