// The chart of docs/performance.md: logins per second per configuration as horizontal bars, an SVG that bench/run.ts
// writes from the figures of the run it just made (never drawn by hand). Plain SVG 1.1, no script, no external font.

/** One bar: a configuration and its logins per second. */
export interface ChartBar {
  label: string;
  value: number;
  /** Colours the bar; the legend lists the groups present. */
  group: 'ours' | 'floor' | 'v1' | 'cluster';
  /** Printed after the value, e.g. the p50 latency. */
  note?: string;
  /** Leaves a gap above this bar (it starts a new group of bars). */
  gapBefore?: boolean;
}

const COLORS: Record<ChartBar['group'], string> = {
  ours: '#2563eb',
  floor: '#9ca3af',
  v1: '#ea580c',
  cluster: '#059669',
};

const LEGEND: Record<ChartBar['group'], string> = {
  ours: 'express-passwordless, one process',
  floor: 'floor: bare Express + express-session',
  v1: 'passwordless 1.1.3 + passwordless-redisstore',
  cluster: 'express-passwordless, node:cluster processes on one Redis',
};

const xml = (text: string) =>
  text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

const int = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** A round step for the grid lines: 1, 2 or 5 times a power of ten, about `count` of them up to `max`. */
function gridStep(max: number, count = 5): number {
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}

/** The SVG text of the chart; `lines` are printed under the title (what was measured, on which machine). */
export function chartSvg(title: string, lines: string[], bars: ChartBar[]): string {
  const width = 860;
  const left = 330;
  const right = 150;
  const rowHeight = 26;
  const gap = 10;
  const top = 34 + lines.length * 17 + 16;
  // Each bar's top edge, a gap above the first bar of each group.
  const rowTop: number[] = [];
  let next = top;
  for (const [i, bar] of bars.entries()) {
    if (bar.gapBefore && i > 0) next += gap;
    rowTop.push(next);
    next += rowHeight;
  }
  const plotWidth = width - left - right;
  const max = Math.max(1, ...bars.map((b) => (Number.isFinite(b.value) ? b.value : 0)));
  const step = gridStep(max);
  const axisMax = Math.ceil(max / step) * step;
  const x = (v: number) => left + (Math.max(0, v) / axisMax) * plotWidth;
  const plotBottom = next;
  const groups = [...new Set(bars.map((b) => b.group))];
  const height = plotBottom + 34 + groups.length * 20 + 10;

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
      `font-family="system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif" font-size="13">`,
  );
  out.push(`<title>${xml(title)}</title>`);
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="16" y="26" font-size="17" font-weight="600" fill="#111827">${xml(title)}</text>`);
  lines.forEach((line, i) => {
    out.push(`<text x="16" y="${48 + i * 17}" fill="#4b5563">${xml(line)}</text>`);
  });
  for (let v = 0; v <= axisMax + step / 2; v += step) {
    const gx = x(v).toFixed(1);
    out.push(
      `<line x1="${gx}" y1="${top - 6}" x2="${gx}" y2="${plotBottom}" stroke="#e5e7eb" stroke-width="1"/>`,
    );
    out.push(
      `<text x="${gx}" y="${plotBottom + 16}" text-anchor="middle" fill="#6b7280" font-size="11">${int.format(v)}</text>`,
    );
  }
  out.push(
    `<text x="${left + plotWidth / 2}" y="${plotBottom + 32}" text-anchor="middle" fill="#374151">full logins per second (requestToken + acceptToken)</text>`,
  );
  bars.forEach((bar, i) => {
    const y = rowTop[i]!;
    const value = Number.isFinite(bar.value) ? bar.value : 0;
    const w = Math.max(1, x(value) - left);
    out.push(
      `<text x="${left - 8}" y="${y + 15}" text-anchor="end" fill="#111827">${xml(bar.label)}</text>`,
      `<rect x="${left}" y="${y + 3}" width="${w.toFixed(1)}" height="${rowHeight - 8}" rx="2" fill="${COLORS[bar.group]}"/>`,
      `<text x="${(left + w + 6).toFixed(1)}" y="${y + 15}" fill="#111827">${int.format(value)}` +
        `${bar.note ? `<tspan dx="8" fill="#6b7280" font-size="11">${xml(bar.note)}</tspan>` : ''}</text>`,
    );
  });
  groups.forEach((group, i) => {
    const y = plotBottom + 46 + i * 20;
    out.push(
      `<rect x="${left}" y="${y}" width="12" height="12" rx="2" fill="${COLORS[group]}"/>`,
      `<text x="${left + 18}" y="${y + 10}" fill="#374151">${xml(LEGEND[group])}</text>`,
    );
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
