// A self-contained SVG bar chart of the speed ratios (partitioned vs each baseline), on a log
// scale centred on 1× (bars to the right: partitioned faster; to the left: slower).
// No scripts, fonts or libraries loaded from anywhere.
import { fmtRatio } from "./stats.ts";
import type { BenchResult } from "./types.ts";

export interface ChartRow {
  label: string;
  vsLegacy: number | null;
  vsIndexed: number | null;
}

export const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

export function chartRows(r: Pick<BenchResult, "queries" | "inserts" | "prepared">): ChartRow[] {
  const rows: ChartRow[] = r.queries.map((q) => ({ label: q.title, vsLegacy: q.speedupVsLegacy, vsIndexed: q.speedupVsIndexed }));
  for (const statement of ["select", "update"] as const) {
    const p50 = (t: string) => r.prepared?.runs.find((x) => x.table === t && x.statement === statement && !x.error)?.timings.median;
    const p = p50("partitioned");
    const ratio = (b: number | undefined) => (b && p ? b / p : null);
    if (p) rows.push({ label: `Id-only ${statement}, prepared`, vsLegacy: ratio(p50("legacy")), vsIndexed: ratio(p50("indexed")) });
  }
  for (const conn of [...new Set((r.inserts?.runs ?? []).map((x) => x.connections))]) {
    const rate = (t: string) => r.inserts?.runs.find((x) => x.table === t && x.commit === "durable" && x.connections === conn)?.rowsPerSecond;
    const p = rate("partitioned");
    const l = rate("legacy");
    const i = rate("indexed");
    if (p && l) rows.push({ label: `Insert rows/s, ${conn} connection${conn > 1 ? "s" : ""}`, vsLegacy: p / l, vsIndexed: i ? p / i : null });
  }
  return rows;
}

export function ratioChartSvg(rows: ChartRow[], title: string, subtitle: string): string {
  const labelW = 300;
  const plotW = 520;
  const rightPad = 70;
  const rowH = 40;
  const top = 82;
  const width = labelW + plotW + rightPad;
  const height = top + rows.length * rowH + 60;
  const values = rows.flatMap((r) => [r.vsLegacy, r.vsIndexed]).filter((v): v is number => v !== null && Number.isFinite(v) && v > 0);
  const lo = Math.min(0.01, ...values.map((v) => 10 ** Math.floor(Math.log10(v))));
  const hi = Math.max(1000, ...values.map((v) => 10 ** Math.ceil(Math.log10(v))));
  const x = (v: number) => Math.round((labelW + ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * plotW) * 10) / 10;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="100%" height="100%" fill="#ffffff"/>`);
  out.push(`<text x="12" y="22" font-size="15" font-weight="bold">${esc(title)}</text>`);
  out.push(`<text x="12" y="40" fill="#555">${esc(subtitle)}</text>`);
  // zebra rows under everything else
  rows.forEach((_, i) => {
    if (i % 2 === 1) out.push(`<rect x="0" y="${top + i * rowH}" width="${width}" height="${rowH}" fill="#f3f3f3"/>`);
  });
  // legend
  out.push(`<rect x="${labelW}" y="50" width="12" height="10" fill="#2f6fde"/><text x="${labelW + 16}" y="59">vs legacy as shipped</text>`);
  out.push(`<rect x="${labelW + 160}" y="50" width="12" height="10" fill="#f08c2a"/><text x="${labelW + 176}" y="59">vs legacy + composite index</text>`);
  // grid: decades
  for (let d = Math.log10(lo); d <= Math.log10(hi) + 1e-9; d++) {
    const v = 10 ** d;
    const gx = x(v);
    out.push(`<line x1="${gx}" y1="${top - 4}" x2="${gx}" y2="${top + rows.length * rowH}" stroke="${v === 1 ? "#000" : "#ddd"}" stroke-width="${v === 1 ? 1.5 : 1}"/>`);
    out.push(`<text x="${gx}" y="${top + rows.length * rowH + 16}" text-anchor="middle" fill="#333">${esc(fmtRatio(v))}</text>`);
  }
  out.push(`<text x="${x(1)}" y="${top + rows.length * rowH + 34}" text-anchor="middle" fill="#555">← partitioned slower · partitioned faster →  (log scale)</text>`);
  // the scan goal vs the indexed table (1.5×) and the plan's promise for program queries (50×)
  for (const [v, label] of [[1.5, "1.5×"], [50, "50×"]] as const) {
    if (v < hi) out.push(`<line x1="${x(v)}" y1="${top - 4}" x2="${x(v)}" y2="${top + rows.length * rowH}" stroke="#999" stroke-dasharray="4 3"/><text x="${x(v) + 3}" y="${top - 6}" fill="#777" font-size="10">goal ${label}</text>`);
  }
  rows.forEach((r, i) => {
    const y = top + i * rowH;
    out.push(`<text x="${labelW - 10}" y="${y + rowH / 2 + 4}" text-anchor="end">${esc(r.label)}</text>`);
    ([[r.vsLegacy, "#2f6fde", 6], [r.vsIndexed, "#f08c2a", 21]] as const).forEach(([v, color, dy]) => {
      if (v === null || !Number.isFinite(v) || v <= 0) {
        out.push(`<text x="${x(1) + 4}" y="${y + dy + 10}" fill="#999" font-size="10">n/a</text>`);
        return;
      }
      const x0 = Math.min(x(1), x(v));
      const w = Math.max(1, Math.abs(x(v) - x(1)));
      out.push(`<rect x="${x0}" y="${y + dy}" width="${w}" height="13" fill="${color}"><title>${esc(`${r.label}: ${fmtRatio(v)}`)}</title></rect>`);
      const tx = v >= 1 ? x(v) + 4 : x(v) - 4;
      out.push(`<text x="${tx}" y="${y + dy + 11}" text-anchor="${v >= 1 ? "start" : "end"}" font-size="11">${esc(fmtRatio(v))}</text>`);
    });
  });
  out.push(`</svg>`);
  return `${out.join("\n")}\n`;
}
