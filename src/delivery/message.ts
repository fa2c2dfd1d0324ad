import { escapeHtml } from './html.js';

/** What the default message texts are made of. */
export interface MessageParts {
  /** The sign-in link, built from `baseUrl`. */
  link: string;
  /** The token, shown for typing when `kind` is `'code'`. */
  token: string;
  kind: 'link' | 'code';
  expiresAt: Date;
  /** The address the message goes to (shown in the HTML footer). */
  recipient: string;
}

/** "15 minutes", "1 minute", "3 hours": how long until `expiresAt`, rounded, at least one minute. */
export function expiresIn(expiresAt: Date, now: number = Date.now()): string {
  const minutes = Math.max(1, Math.round((expiresAt.getTime() - now) / 60_000));
  if (minutes < 120) return `${minutes} minute${minutes === 1 ? '' : 's'}`;
  return `${Math.round(minutes / 60)} hours`;
}

function expiry(kind: 'link' | 'code'): string {
  return kind === 'code' ? 'The code and the link expire' : 'The link expires';
}

export function defaultSubject(kind: 'link' | 'code'): string {
  return kind === 'code' ? 'Your sign-in code' : 'Your sign-in link';
}

export function defaultText(m: MessageParts): string {
  const lines =
    m.kind === 'code'
      ? ['Your sign-in code is:', '', `    ${m.token}`, '', 'Or sign in with this link:', '', m.link]
      : ['Use this link to sign in:', '', m.link];
  lines.push(
    '',
    `${expiry(m.kind)} in ${expiresIn(m.expiresAt)}.`,
    'If you did not ask to sign in, you can ignore this email.',
  );
  return `${lines.join('\n')}\n`;
}

const FONT = 'font-family:-apple-system,BlinkMacSystemFont,Segoe UI,Roboto,Helvetica,Arial,sans-serif';
const SMALL = 'font-size:13px;line-height:1.5;color:#555;margin:0 0 16px';

/**
 * A self-contained HTML part: inline styles only, no images, fonts or other external assets, so nothing is fetched
 * when it is opened; the only URL in it is the sign-in link, also shown as text under the button. Every value is
 * escaped.
 */
export function defaultHtml(m: MessageParts, subject: string): string {
  const link = escapeHtml(m.link);
  const code =
    m.kind === 'code'
      ? [
          '<p style="margin:0 0 8px">Enter this code to sign in:</p>',
          `<p style="font-size:32px;line-height:1.2;font-weight:700;letter-spacing:6px;font-family:Menlo,Consolas,monospace;margin:0 0 24px">${escapeHtml(m.token)}</p>`,
          '<p style="margin:0 0 16px">Or sign in with this button:</p>',
        ]
      : ['<p style="margin:0 0 16px">Use this button to sign in:</p>'];
  return [
    '<!doctype html>',
    '<html lang="en">',
    '<head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">',
    `<title>${escapeHtml(subject)}</title></head>`,
    `<body style="margin:0;padding:24px;background:#f4f4f5;${FONT}">`,
    '<div style="max-width:480px;margin:0 auto;background:#ffffff;border-radius:8px;padding:32px;color:#18181b;font-size:16px;line-height:1.5">',
    `<h1 style="font-size:20px;margin:0 0 16px">${escapeHtml(subject)}</h1>`,
    ...code,
    '<p style="margin:0 0 24px">',
    `<a href="${link}" style="display:inline-block;padding:12px 24px;background:#1d4ed8;color:#ffffff;text-decoration:none;border-radius:6px;font-weight:600">Sign in</a>`,
    '</p>',
    `<p style="${SMALL}">If the button does not work, copy this address into your browser:</p>`,
    `<p style="${SMALL};word-break:break-all"><a href="${link}" style="color:#1d4ed8">${link}</a></p>`,
    `<p style="${SMALL}">${expiry(m.kind)} in ${escapeHtml(expiresIn(m.expiresAt))}. If you did not ask to sign in, you can ignore this email.</p>`,
    `<p style="font-size:12px;color:#71717a;margin:0">Sent to ${escapeHtml(m.recipient)}.</p>`,
    '</div>',
    '</body>',
    '</html>',
    '',
  ].join('\n');
}
