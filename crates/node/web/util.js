// Small helpers: building DOM nodes (text is always set as text, never parsed as HTML)
// and formatting sizes, rates and times.

/**
 * h("button", {class: "x", "data-testid": "y", onclick: f}, "text", child, ...)
 * Attributes starting with "on" are listeners; `false`/`null`/`undefined` ones are
 * left out; children may be strings, nodes, arrays or null.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replace all children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

/** 1536 → "1.5 KiB". */
export function bytes(n) {
  n = Number(n) || 0;
  let u = 0;
  while (n >= 1024 && u < UNITS.length - 1) {
    n /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)} ${UNITS[u]}`;
}

/** Bytes per second → "1.5 MiB/s" ("" when 0). */
export function rate(n) {
  return n > 0 ? `${bytes(n)}/s` : "";
}

/** Seconds → "1h 02m", "3m 05s", "12s". */
export function duration(s) {
  s = Math.max(0, Math.round(s));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = s % 60;
  if (hh) return `${hh}h ${String(mm).padStart(2, "0")}m`;
  if (mm) return `${mm}m ${String(ss).padStart(2, "0")}s`;
  return `${ss}s`;
}

/** Unix seconds → local "HH:MM:SS" (today) or "YYYY-MM-DD HH:MM". */
export function clock(ts) {
  const d = new Date(ts * 1000);
  const now = new Date();
  const pad = (x) => String(x).padStart(2, "0");
  const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (d.toDateString() === now.toDateString()) return hms;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hms.slice(0, 5)}`;
}

/** Unix seconds → "5s ago", "3m ago"... */
export function ago(ts) {
  const s = Date.now() / 1000 - ts;
  if (s < 0) return `in ${duration(-s)}`;
  return `${duration(s)} ago`;
}

/** The last component of a backslash- or slash-separated path. */
export function basename(p) {
  const parts = String(p).split(/[\\/]/);
  return parts[parts.length - 1] || String(p);
}

/** The folder part of a path (without the name). */
export function dirname(p) {
  const s = String(p);
  const i = Math.max(s.lastIndexOf("\\"), s.lastIndexOf("/"));
  return i > 0 ? s.slice(0, i) : "";
}

/** Human names of the networks and roles the node reports. */
export const NETWORK_NAMES = {
  dcc: "DCC server",
  nmdc_hub: "NMDC hub",
  slsk_server: "Soulseek server",
  tox_bootstrap: "Tox bootstrap node",
  nmdc_client: "Direct Connect (NMDC)",
  slsk_client: "Soulseek",
  nmdc: "NMDC",
  slsk: "Soulseek",
  tox_client: "Tox",
  tox: "Tox",
};

/**
 * "nmdc_client" → "Direct Connect (NMDC)"; a labelled session ("nmdc_client@hub2", or a
 * network and a session label) → "Direct Connect (NMDC) · hub2".
 */
export function networkName(n, label) {
  const [base, at] = String(n).split("@");
  const l = label || at;
  const name = NETWORK_NAMES[base] || base;
  return l ? `${name} · ${l}` : name;
}
