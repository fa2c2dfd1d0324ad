// HTML for the example apps: a tagged template that escapes every interpolated value, and the page layout.
//
//   html`<p>Hello ${user}</p>`   — `user` is escaped; only values made by `html` itself (or `raw`) pass through as is.

/** A piece of HTML that is already safe to put into a page. */
export class SafeHtml {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

const ENTITIES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** Escapes `& < > " '`: safe for text and for quoted attribute values. */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => ENTITIES[c] ?? c);
}

function render(value: unknown): string {
  if (value instanceof SafeHtml) return value.value;
  if (Array.isArray(value)) return value.map(render).join('');
  if (value === undefined || value === null || value === false) return '';
  return escapeHtml(String(value));
}

/** Tagged template: every `${value}` is escaped, unless it is `SafeHtml`; arrays are joined; `null`, `undefined` and `false` print nothing. */
export function html(strings: TemplateStringsArray, ...values: unknown[]): SafeHtml {
  let out = strings[0] ?? '';
  values.forEach((value, i) => {
    out += render(value) + (strings[i + 1] ?? '');
  });
  return new SafeHtml(out);
}

/** Flash messages for the next page: `passwordless` / `error` are problems, `passwordless-success` / `info` news. */
export interface Flashes {
  errors: string[];
  notices: string[];
}

/** Takes (and so removes) the connect-flash messages of the session. */
export function takeFlashes(req: { flash(type: string): string[] }): Flashes {
  return {
    errors: [...req.flash('passwordless'), ...req.flash('error')],
    notices: [...req.flash('passwordless-success'), ...req.flash('info')],
  };
}

export interface NavLink {
  href: string;
  label: string;
}

export interface LayoutOptions {
  /** The app's name, in the header and every title. */
  appName: string;
  /** This page's title (also its `<title>`). */
  title: string;
  /** Links of the main navigation; the one whose `href` is `current` is marked `aria-current="page"`. */
  nav: NavLink[];
  current?: string;
  /** The uid shown in the header with a log-out button; none when nobody is logged in. */
  user?: string | undefined;
  /** Label of the user in the header (defaults to `user`). */
  userLabel?: string | undefined;
  flashes?: Flashes;
  body: SafeHtml;
}

/** A whole page: language, landmarks (header/nav/main/footer), a skip link, messages as live regions. */
export function layout(o: LayoutOptions): string {
  const nav = o.nav.map(
    (link) =>
      html`<li><a href="${link.href}"${link.href === o.current ? html` aria-current="page"` : ''}>${link.label}</a></li>`,
  );
  const account = o.user
    ? html`<form class="who" method="post" action="/logout">
        <span>Logged in as <strong>${o.userLabel ?? o.user}</strong></span>
        <button type="submit" class="link">Log out</button>
      </form>`
    : html`<a class="who" href="/login">Log in</a>`;
  const errors = o.flashes?.errors ?? [];
  const notices = o.flashes?.notices ?? [];
  return html`<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>${o.title} · ${o.appName}</title>
  <link rel="stylesheet" href="/assets/style.css">
</head>
<body>
  <a class="skip" href="#main">Skip to content</a>
  <header>
    <p class="brand"><a href="/">${o.appName}</a></p>
    <nav aria-label="Main"><ul>${nav}</ul></nav>
    ${account}
  </header>
  <main id="main" tabindex="-1">
    ${errors.map((m) => html`<p class="flash error" role="alert">${m}</p>`)}
    ${notices.map((m) => html`<p class="flash notice" role="status">${m}</p>`)}
    ${o.body}
  </main>
  <footer><p>An example app of express-passwordless. Development only: messages are not sent but kept in the <a href="/outbox">outbox</a>.</p></footer>
</body>
</html>
`.value;
}
