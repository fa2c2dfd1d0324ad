// The example's "user database": two in-memory Maps. A real app keeps accounts in its own database.
import { randomBytes } from 'node:crypto';

/** How long a guest account lives unless it is kept by verifying an email address. */
export const GUEST_LIFETIME = 24 * 60 * 60 * 1000; // one day

export interface Account {
  /** The uid passwordless logs in: the address for accounts made by email, `guest:<random>` for guests. */
  uid: string;
  /** The verified address; none yet for a guest. */
  email?: string;
  /** A guest account is temporary: it is forgotten at `expiresAt`, unless an address is verified before. */
  guest: boolean;
  createdAt: number;
  expiresAt?: number;
}

/** What completing a login by code did to the account. */
export type LoginOutcome = 'logged-in' | 'created' | 'kept-guest' | 'address-taken';

export class Accounts {
  readonly #byUid = new Map<string, Account>();
  readonly #uidByEmail = new Map<string, string>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** The account, or `undefined` for an unknown uid or a guest older than a day (which is then forgotten). */
  get(uid: string): Account | undefined {
    const account = this.#byUid.get(uid);
    if (account?.expiresAt !== undefined && account.expiresAt <= this.#now()) {
      this.delete(uid);
      return undefined;
    }
    return account;
  }

  /** The uid of the account that verified `email`, if any. */
  uidForEmail(email: string): string | undefined {
    const uid = this.#uidByEmail.get(email);
    return uid !== undefined && this.get(uid) ? uid : undefined;
  }

  /** A new temporary account, valid for a day. */
  createGuest(): Account {
    const now = this.#now();
    const account: Account = {
      uid: `guest:${randomBytes(9).toString('base64url')}`,
      guest: true,
      createdAt: now,
      expiresAt: now + GUEST_LIFETIME,
    };
    this.#byUid.set(account.uid, account);
    return account;
  }

  /**
   * Called once `uid` has proven that it receives mail at `email` (the code was right): a guest becomes permanent
   * with that address, an unknown uid becomes a new account, a known one just logs in.
   */
  completeLogin(uid: string, email: string): LoginOutcome {
    const account = this.get(uid);
    const owner = this.uidForEmail(email);
    if (owner !== undefined && owner !== uid) return 'address-taken';
    if (!account) {
      this.#byUid.set(uid, { uid, email, guest: false, createdAt: this.#now() });
      this.#uidByEmail.set(email, uid);
      return 'created';
    }
    if (!account.guest) return 'logged-in';
    account.email = email;
    account.guest = false;
    delete account.expiresAt;
    this.#uidByEmail.set(email, uid);
    return 'kept-guest';
  }

  delete(uid: string): void {
    const account = this.#byUid.get(uid);
    if (account?.email !== undefined && this.#uidByEmail.get(account.email) === uid) {
      this.#uidByEmail.delete(account.email);
    }
    this.#byUid.delete(uid);
  }

  /** Forgets every guest older than a day, including those who never come back. */
  sweep(): void {
    for (const uid of [...this.#byUid.keys()]) this.get(uid);
  }
}
