// The pages of the code-login example. Every value goes through `html`, which escapes it.
import { type Flashes, html, layout, type SafeHtml } from '../shared/html.js';
import type { Account } from './accounts.js';

const APP_NAME = 'Code-login example';

export interface PageContext {
  account: Account | undefined;
  flashes: Flashes;
  current: string;
  now: number;
}

function label(account: Account): string {
  return account.email ?? 'Guest';
}

function page(ctx: PageContext, title: string, body: SafeHtml): string {
  return layout({
    appName: APP_NAME,
    title,
    nav: [
      { href: '/', label: 'Home' },
      { href: '/account', label: 'Account' },
      { href: '/outbox', label: 'Outbox' },
    ],
    current: ctx.current,
    user: ctx.account?.uid,
    userLabel: ctx.account ? label(ctx.account) : undefined,
    flashes: ctx.flashes,
    body,
  });
}

function hoursLeft(account: Account, now: number): number {
  return Math.max(0, Math.ceil(((account.expiresAt ?? now) - now) / 3_600_000));
}

const emailForm = (button: string) => html`<form class="stack" method="post" action="/login">
    <div>
      <label for="email">Email address</label>
      <p class="hint" id="email-hint">We send a 6-digit code to this address. It works for 10 minutes.</p>
    </div>
    <input id="email" name="user" type="email" autocomplete="email" required maxlength="254"
      aria-describedby="email-hint">
    <p class="actions"><button type="submit">${button}</button></p>
  </form>`;

export function homePage(ctx: PageContext): string {
  const body = ctx.account
    ? html`<h1>Welcome${ctx.account.guest ? ', guest' : ' back'}</h1>
      <p>You are logged in as <strong>${label(ctx.account)}</strong>.</p>
      <p class="actions"><a class="button" href="/account">Go to your account</a></p>`
    : html`<h1>Log in with a code</h1>
      <p>Enter your email address, then the 6-digit code we send to it. Or look around first as a guest: a guest
        account lasts a day, and you can keep it later by verifying your email.</p>
      <div class="actions">
        <a class="button" href="/login">Log in with email</a>
        <form method="post" action="/guest"><button type="submit" class="secondary">Continue as guest</button></form>
      </div>`;
  return page(ctx, 'Home', body);
}

export function loginPage(ctx: PageContext): string {
  const body = ctx.account?.guest
    ? html`<h1>Keep your guest account</h1>
      <p>Verify your email address: enter the code we send to it, and this guest account becomes yours for good.</p>
      ${emailForm('Send me a code')}`
    : html`<h1>Log in</h1>
      ${emailForm('Send me a code')}
      <p>No account yet? The first code you enter creates one.</p>`;
  return page(ctx, ctx.account?.guest ? 'Keep your account' : 'Log in', body);
}

export function codePage(
  ctx: PageContext,
  pending: { email: string; keepsGuest: boolean },
  prefill: string | undefined,
): string {
  return page(
    ctx,
    'Enter your code',
    html`<h1>Enter your code</h1>
    <p>We sent a 6-digit code to <strong>${pending.email}</strong>.
      ${pending.keepsGuest ? 'Entering it links this address to your guest account and keeps the account.' : ''}</p>
    <p class="hint">Development app: the code is printed in the terminal that runs the app, and listed in the
      <a href="/outbox">outbox</a>.</p>
    <form class="stack" method="post" action="/login/code">
      <div>
        <label for="code">6-digit code</label>
        <p class="hint" id="code-hint">It works for 10 minutes; after 5 wrong tries, ask for a new one.</p>
      </div>
      <input id="code" class="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code"
        pattern="[0-9]{6}" minlength="6" maxlength="6" required aria-describedby="code-hint" autofocus
        ${prefill ? html`value="${prefill}"` : ''}>
      <p class="actions"><button type="submit">Log in</button></p>
    </form>
    <div class="actions">
      <form method="post" action="/login">
        <input type="hidden" name="user" value="${pending.email}">
        <button type="submit" class="secondary">Send a new code</button>
      </form>
      <a href="/login">Use another address</a>
    </div>`,
  );
}

export function accountPage(ctx: PageContext & { account: Account }): string {
  const { account } = ctx;
  const status = account.guest
    ? html`<span class="badge guest">Guest account</span>`
    : html`<span class="badge permanent">Permanent account</span>`;
  const body = html`<h1>Hello, ${label(account)}</h1>
    <p>${status}</p>
    <p>This page is restricted: only logged-in users see it.</p>
    <dl>
      <dt>Account id</dt><dd>${account.uid}</dd>
      <dt>Email</dt><dd>${account.email ?? 'none yet'}</dd>
      <dt>Status</dt><dd>${
        account.guest
          ? `temporary: deleted in about ${hoursLeft(account, ctx.now)} hours, or when you log out`
          : `permanent, linked to ${account.email}`
      }</dd>
    </dl>
    ${
      account.guest
        ? html`<h2>Keep this account</h2>
          <p>Verify your email address and the account stays, with everything in it.</p>
          ${emailForm('Send me a code')}`
        : ''
    }
    <form method="post" action="/logout"><button type="submit" class="secondary">Log out</button></form>`;
  return page(ctx, 'Your account', body);
}

export function notFoundPage(ctx: PageContext): string {
  return page(ctx, 'Not found', html`<h1>Page not found</h1><p><a href="/">Back to the home page</a></p>`);
}

export function errorPage(ctx: PageContext): string {
  return page(
    ctx,
    'Something went wrong',
    html`<h1>Something went wrong</h1><p>Please try again in a moment. <a href="/">Home</a></p>`,
  );
}
