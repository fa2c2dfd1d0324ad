// The pages of the magic-link example. Every value goes through `html`, which escapes it.
import { type Flashes, html, layout } from '../shared/html.js';

const APP_NAME = 'Magic-link example';

interface PageContext {
  user: string | undefined;
  flashes: Flashes;
  current: string;
}

function page(ctx: PageContext, title: string, body: ReturnType<typeof html>): string {
  return layout({
    appName: APP_NAME,
    title,
    nav: [
      { href: '/', label: 'Home' },
      { href: '/account', label: 'Account' },
      { href: '/outbox', label: 'Outbox' },
    ],
    current: ctx.current,
    user: ctx.user,
    flashes: ctx.flashes,
    body,
  });
}

export function homePage(ctx: PageContext): string {
  const body = ctx.user
    ? html`<h1>Welcome back</h1>
      <p>You are logged in as <strong>${ctx.user}</strong>.</p>
      <p class="actions"><a class="button" href="/account">Go to your account</a></p>`
    : html`<h1>Log in without a password</h1>
      <p>Enter your email address and we send you a link. Open it, and you are logged in: no password to remember,
        none to leak.</p>
      <p class="actions"><a class="button" href="/login">Log in with email</a></p>`;
  return page(ctx, 'Home', body);
}

export function loginPage(ctx: PageContext, origin: string | undefined): string {
  return page(
    ctx,
    'Log in',
    html`<h1>Log in</h1>
    <form class="stack" method="post" action="/login">
      <div>
        <label for="email">Email address</label>
        <p class="hint" id="email-hint">We send a login link to this address. It works once, for 15 minutes.</p>
      </div>
      <input id="email" name="user" type="email" autocomplete="email" required maxlength="254"
        aria-describedby="email-hint" autofocus>
      ${origin ? html`<input type="hidden" name="origin" value="${origin}">` : ''}
      <p class="actions"><button type="submit">Email me a login link</button></p>
    </form>`,
  );
}

export function sentPage(ctx: PageContext, email: string): string {
  return page(
    ctx,
    'Check your inbox',
    html`<h1>Check your inbox</h1>
    <p>We sent a login link to <strong>${email}</strong>. Open it in this browser to log in; it works once, for
      15 minutes.</p>
    <p>This is a development app: nothing is really emailed. The link is printed in the terminal that runs the app,
      and listed in the <a href="/outbox">outbox</a>.</p>
    <p class="actions"><a class="button secondary" href="/login">Use another address</a></p>`,
  );
}

export function accountPage(ctx: PageContext & { user: string }): string {
  return page(
    ctx,
    'Your account',
    html`<h1>Hello, ${ctx.user}</h1>
    <p>This page is restricted: only logged-in users see it.</p>
    <dl>
      <dt>Logged in as</dt><dd>${ctx.user}</dd>
      <dt>Session</dt><dd>lasts 7 days in this browser, or until you log out</dd>
    </dl>
    <form method="post" action="/logout"><button type="submit" class="secondary">Log out</button></form>`,
  );
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
