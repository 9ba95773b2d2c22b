// otel-leakproc status page. Plain ES2020, no dependencies, no external fetches.
// Every string from the API goes into the DOM through textContent / setAttribute, never innerHTML.
"use strict";

(() => {
  const API_URL = "api/v1/series"; // relative: works behind a path prefix
  const REFRESH_MS = 15000;
  const FETCH_TIMEOUT_MS = 10000;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const UPLOAD_EXAMPLE =
    "curl -g --data-binary @heap.pb.gz 'localhost:4040/ingest?name=checkout{instance=pod-1}&format=pprof'";

  const STATUS = {
    confirmed: { rank: 0, label: "Confirmed", icon: "\u2716" }, // heavy X
    suspected: { rank: 1, label: "Suspected", icon: "\u25B2" }, // triangle
    ok: { rank: 2, label: "OK", icon: "\u2714" }, // check mark
    insufficient_data: { rank: 3, label: "Insufficient data", icon: "\u2026" }, // ellipsis
  };
  const UNKNOWN_STATUS = { rank: 4, label: "Unknown", icon: "?" };

  const KINDS = {
    heap: { title: "Heap in use", what: "heap in-use" },
    goroutine: { title: "Goroutines", what: "goroutines" },
    goroutineleak: { title: "Leaked goroutines (GC-proven)", what: "leaked goroutines" },
    mutex: { title: "Lock contention (mutex)", what: "lock wait" },
    block: { title: "Blocking (block profile)", what: "blocked time" },
  };

  const state = {
    userToggled: new Map(), // series id -> open (bool) chosen by the user, kept across refreshes
    lastOkAt: null,
    refreshes: 0,
    timer: null,
    inFlight: false,
    scrolledToHash: false,
  };

  // ---------- DOM helpers ----------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    if (!attrs) return;
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.setAttribute("class", String(v));
      else if (k === "text") node.textContent = String(v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
  }

  function append(node, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  // ---------- formatting ----------

  function isNum(v) {
    return typeof v === "number" && Number.isFinite(v);
  }

  function fixed(v, digits) {
    return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  function bytes(v) {
    const a = Math.abs(v);
    if (a >= 2 ** 30) return `${fixed(v / 2 ** 30, 2)} GiB`;
    if (a >= 2 ** 20) return `${fixed(v / 2 ** 20, 1)} MiB`;
    if (a >= 2 ** 10) return `${fixed(v / 2 ** 10, 1)} KiB`;
    return `${fixed(v, 0)} B`;
  }

  function msPerSecond(nsPerSecond) {
    const ms = nsPerSecond / 1e6;
    const a = Math.abs(ms);
    if (a === 0) return "0 ms/s";
    if (a < 0.01) return `${fixed(nsPerSecond / 1e3, 1)} \u00B5s/s`;
    return `${fixed(ms, a >= 100 ? 0 : a >= 10 ? 1 : 2)} ms/s`;
  }

  // A lock delay rate at its own scale (seconds of waiting per second can be many: 37 waiters).
  function delayRate(nsPerSecond) {
    return Math.abs(nsPerSecond) >= 1e9 ? `${fixed(nsPerSecond / 1e9, 1)} s/s` : msPerSecond(nsPerSecond);
  }

  // A value in the kind's unit, for people.
  function human(v, kind) {
    if (!isNum(v)) return "\u2014";
    if (kind === "heap") return bytes(v);
    if (kind === "mutex" || kind === "block") return msPerSecond(v);
    const n = Math.abs(v) >= 10 || Number.isInteger(v) ? fixed(v, 0) : fixed(v, 1);
    return `${n} goroutine${Math.abs(v) === 1 ? "" : "s"}`;
  }

  // Axis labels: the unit without the word "goroutines" (the chart title says what is counted).
  function axisLabel(v, kind) {
    if (kind === "heap" || kind === "mutex" || kind === "block") return human(v, kind);
    return Math.abs(v) >= 10 || Number.isInteger(v) ? fixed(v, 0) : fixed(v, 1);
  }

  function signed(v, kind) {
    if (!isNum(v)) return "\u2014";
    const s = human(v, kind);
    return v > 0 ? `+${s}` : s.replace(/^-/, "\u2212");
  }

  function signedCount(v) {
    const n = axisLabel(v, "goroutine");
    return v > 0 ? `+${n}` : n.replace(/^-/, "\u2212");
  }

  function growthText(v, kind) {
    if (!isNum(v)) return "\u2014";
    if (v === 0) return "no growth";
    return `${signed(v, kind)} per hour`;
  }

  function duration(seconds) {
    if (!isNum(seconds)) return null;
    const s = Math.max(0, seconds);
    if (s < 120) return `${Math.round(s)} s`;
    if (s < 7200) return `${Math.round(s / 60)} min`;
    if (s < 172800) {
      const h = Math.floor(s / 3600);
      const m = Math.round((s - h * 3600) / 60);
      return m ? `${h} h ${m} min` : `${h} h`;
    }
    return `${fixed(s / 86400, 1)} days`;
  }

  function parseTime(t) {
    if (typeof t !== "string" || !t) return null;
    const ms = Date.parse(t);
    return Number.isNaN(ms) ? null : ms;
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  // Times are shown in UTC (alerts, logs and pprof timestamps are compared across time zones).
  function utcTime(ms, withDate) {
    const d = new Date(ms);
    const hm = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
    if (!withDate) return hm;
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${hm} UTC`;
  }

  // Chart time labels: HH:MM, with the day when the chart spans more than a day.
  function axisTime(ms, spanSeconds) {
    if (spanSeconds <= 86400) return utcTime(ms, false);
    const d = new Date(ms);
    return `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${utcTime(ms, false)}`;
  }

  function ago(ms) {
    const diff = (Date.now() - ms) / 1000;
    if (diff < -60 || diff > 30 * 86400) return null;
    if (diff < 60) return "just now";
    return `${duration(diff)} ago`;
  }

  function timeEl(t, withDate = true) {
    const ms = parseTime(t);
    if (ms === null) return document.createTextNode("\u2014");
    const rel = ago(ms);
    return el("time", { datetime: t, title: t }, utcTime(ms, withDate) + (rel ? ` (${rel})` : ""));
  }

  function statusInfo(status) {
    return STATUS[status] || UNKNOWN_STATUS;
  }

  function kindInfo(kind) {
    return KINDS[kind] || { title: String(kind || "profile"), what: String(kind || "value") };
  }

  function badge(status, extraClass) {
    const info = statusInfo(status);
    const cls = STATUS[status] ? status : "unknown";
    return el(
      "span",
      { class: `badge badge-${cls}${extraClass ? " " + extraClass : ""}`, "data-status": String(status) },
      el("span", { class: "badge-icon", "aria-hidden": "true" }, info.icon),
      " ",
      info.label,
    );
  }

  // ---------- data shaping ----------

  function seriesId(s) {
    if (typeof s.id === "string" && s.id) return s.id;
    return [s.tenant || "", s.service || "", s.instance || "", s.kind || ""].join("/");
  }

  function compareSeries(a, b) {
    return (
      statusInfo(a.status).rank - statusInfo(b.status).rank ||
      (isNum(b.score) ? b.score : 0) - (isNum(a.score) ? a.score : 0) ||
      seriesId(a).localeCompare(seriesId(b))
    );
  }

  // Groups: tenant/service, then instance; the group with the worst series first.
  function group(series) {
    const services = new Map();
    for (const s of series) {
      const key = `${s.tenant || ""}\u0000${s.service || ""}`;
      if (!services.has(key)) services.set(key, { tenant: s.tenant || "", service: s.service || "", instances: new Map() });
      const svc = services.get(key);
      const ikey = s.instance || "";
      if (!svc.instances.has(ikey)) svc.instances.set(ikey, { instance: ikey, series: [] });
      svc.instances.get(ikey).series.push(s);
    }
    const worst = (list) => list.slice().sort(compareSeries)[0];
    const out = [];
    for (const svc of services.values()) {
      const instances = [...svc.instances.values()];
      for (const inst of instances) {
        inst.series.sort(compareSeries);
        inst.worst = inst.series[0];
      }
      instances.sort((a, b) => compareSeries(a.worst, b.worst) || a.instance.localeCompare(b.instance));
      svc.instances = instances;
      svc.all = instances.flatMap((i) => i.series);
      svc.worst = worst(svc.all);
      out.push(svc);
    }
    out.sort(
      (a, b) =>
        compareSeries(a.worst, b.worst) ||
        a.service.localeCompare(b.service) ||
        a.tenant.localeCompare(b.tenant),
    );
    return out;
  }

  function anchorFor(id) {
    return "series-" + encodeURIComponent(id).replace(/%/g, "_");
  }

  // ---------- rendering ----------

  function renderSummary(series) {
    const node = document.getElementById("summary");
    const counts = {};
    for (const s of series) counts[s.status] = (counts[s.status] || 0) + 1;
    const parts = [];
    for (const status of Object.keys(STATUS)) {
      if (!counts[status]) continue;
      parts.push(el("span", { class: "count" }, badge(status, "badge-small"), ` ${counts[status]}`));
    }
    if (!parts.length) parts.push(el("span", { class: "count" }, "no series"));
    node.replaceChildren(...parts);
  }

  function renderEmpty() {
    return el(
      "section",
      { class: "empty", "aria-labelledby": "empty-title" },
      el("h2", { id: "empty-title" }, "No profiles received yet"),
      el(
        "p",
        null,
        "Nothing is tracked yet. Point your services' profilers (Pyroscope SDKs, Grafana Alloy, OTLP profiles) at this " +
          "server, or upload a profile by hand:",
      ),
      el("pre", { class: "code" }, el("code", null, UPLOAD_EXAMPLE)),
      el(
        "p",
        null,
        "Use curl's ",
        el("code", null, "-g"),
        " so the braces are not read as a glob. Raw pprof (",
        el("code", null, "heap"),
        ", ",
        el("code", null, "goroutine"),
        ", ",
        el("code", null, "mutex"),
        ", ",
        el("code", null, "block"),
        ") and goroutine ",
        el("code", null, "debug=2"),
        " text dumps are accepted. A series needs several profiles over time before it gets a verdict; this page " +
          "refreshes every 15 seconds.",
      ),
    );
  }

  function stat(label, value, extraClass) {
    return el("div", { class: `stat${extraClass ? " " + extraClass : ""}` }, el("dt", null, label), el("dd", null, value));
  }

  function renderStats(s) {
    const kind = s.kind;
    const growth = s.growth_per_hour;
    const growthCls = isNum(growth) && growth > 0 && statusInfo(s.status).rank <= 1 ? "stat-bad" : "";
    const ttl = duration(s.time_to_limit_seconds);
    const stats = [
      stat("Current", human(s.current, kind), "stat-main"),
      stat("Growth", growthText(growth, kind), growthCls),
      stat("Time to limit", ttl ? `${ttl}` : "no limit known", ttl ? "stat-bad" : ""),
      stat("Restarts", isNum(s.restarts) ? String(s.restarts) : "\u2014"),
      stat("Flagged since", s.first_flagged_at ? timeEl(s.first_flagged_at) : "not flagged"),
    ];
    const firstMs = parseTime(s.first_time);
    const meta = el(
      "p",
      { class: "meta" },
      isNum(s.profiles) ? `${s.profiles} profile${s.profiles === 1 ? "" : "s"}` : "? profiles",
      firstMs !== null ? ` since ${utcTime(firstMs, true)}` : "",
      " \u00B7 last profile ",
      timeEl(s.last_time),
      isNum(s.score) ? ` \u00B7 score ${fixed(s.score, 2)}` : "",
    );
    return [el("dl", { class: "stats" }, stats), meta];
  }

  function renderGrowers(s) {
    const growers = Array.isArray(s.top_growers) ? s.top_growers : [];
    if (!growers.length) return el("p", { class: "muted no-growers" }, "No growing site named.");
    const isGoroutine = s.kind === "goroutine" || s.kind === "goroutineleak";
    const contention = s.kind === "mutex" || s.kind === "block";
    const caption =
      s.kind === "mutex"
        ? "Contended locks (holder call site)"
        : s.kind === "block"
          ? "Blocked call sites (waiter)"
          : isGoroutine
            ? "Growing goroutine groups"
            : "Top growers (allocation sites)";
    const head = el(
      "tr",
      null,
      el("th", { scope: "col" }, isGoroutine ? "Group (where it blocks)" : "Function"),
      el("th", { scope: "col" }, "File:line"),
      isGoroutine ? el("th", { scope: "col" }, "State") : null,
      el("th", { scope: "col", class: "num" }, "Growth/h"),
      el("th", { scope: "col", class: "share-col" }, contention ? "Share of wait" : "Share of growth"),
    );
    const rows = growers.map((g) => {
      const share = isNum(g.share) ? Math.min(1, Math.max(0, g.share)) : null;
      const pct = share === null ? "\u2014" : `${fixed(share * 100, share < 0.1 && share > 0 ? 1 : 0)}%`;
      const where = g.file ? `${g.file}${isNum(g.line) && g.line > 0 ? ":" + g.line : ""}` : "\u2014";
      return el(
        "tr",
        null,
        el("td", { class: "fn" }, breakable(g.function ?? "?")),
        el("td", { class: "loc" }, where === "\u2014" ? where : breakable(where)),
        isGoroutine ? el("td", { class: "state" }, g.state ? String(g.state) : "\u2014") : null,
        el("td", { class: "num" }, isGoroutine && isNum(g.growth_per_hour) ? signedCount(g.growth_per_hour) : signed(g.growth_per_hour, s.kind)),
        el(
          "td",
          { class: "share" },
          el(
            "span",
            { class: "bar", "aria-hidden": "true" },
            el("span", { class: "bar-fill", style: `width:${share === null ? 0 : (share * 100).toFixed(1)}%` }),
          ),
          el("span", { class: "bar-text" }, pct),
        ),
      );
    });
    return el(
      "table",
      { class: "growers" },
      el("caption", null, caption),
      el("thead", null, head),
      el("tbody", null, rows),
    );
  }

  // Code text with line-break opportunities after separators, so long Go names wrap at "." and "/".
  function breakable(text) {
    const parts = String(text).split(/(?<=[./)])/);
    const out = [];
    parts.forEach((part, i) => {
      if (i) out.push(document.createElement("wbr"));
      out.push(document.createTextNode(part));
    });
    return el("code", null, out);
  }

  function timelinePoints(s) {
    const tl = Array.isArray(s.timeline) ? s.timeline : [];
    const pts = [];
    for (const p of tl) {
      if (Array.isArray(p) && isNum(p[0]) && isNum(p[1])) pts.push([p[0], p[1]]);
    }
    return pts;
  }

  function renderChart(s) {
    const pts = timelinePoints(s);
    const info = kindInfo(s.kind);
    if (!pts.length) return el("p", { class: "muted no-chart" }, "No timeline yet.");
    const W = 640;
    const H = 200;
    const M = { l: 78, r: 14, t: 14, b: 28 };
    const pw = W - M.l - M.r;
    const ph = H - M.t - M.b;
    let t0 = pts[0][0];
    let t1 = pts[0][0];
    let v0 = pts[0][1];
    let v1 = pts[0][1];
    for (const [t, v] of pts) {
      t0 = Math.min(t0, t);
      t1 = Math.max(t1, t);
      v0 = Math.min(v0, v);
      v1 = Math.max(v1, v);
    }
    if (v0 > 0 && v0 < (v1 - v0) * 0.5) v0 = 0; // start at zero when that loses little detail
    if (v1 === v0) {
      const d = Math.abs(v1) * 0.1 || 1;
      v0 -= d;
      v1 += d;
    } else {
      const d = (v1 - v0) * 0.06;
      v1 += d;
      if (v0 !== 0) v0 -= d;
    }
    const span = t1 - t0 || 1;
    const x = (t) => M.l + (pts.length === 1 ? pw / 2 : ((t - t0) / span) * pw);
    const y = (v) => M.t + ph - ((v - v0) / (v1 - v0)) * ph;
    const r = (n) => n.toFixed(1);

    const d = pts.map(([t, v], i) => `${i ? "L" : "M"}${r(x(t))},${r(y(v))}`).join(" ");
    const area = `${d} L${r(x(pts[pts.length - 1][0]))},${r(M.t + ph)} L${r(x(pts[0][0]))},${r(M.t + ph)} Z`;

    const titleId = `${anchorFor(seriesId(s))}-chart-title`;
    const first = pts[0][1];
    const last = pts[pts.length - 1][1];
    const flaggedMs = parseTime(s.first_flagged_at);
    let summary =
      `${info.title} from ${utcTime(t0 * 1000, true)} to ${utcTime(t1 * 1000, true)}: ` +
      `${human(first, s.kind)} to ${human(last, s.kind)} over ${pts.length} profile${pts.length === 1 ? "" : "s"}`;
    if (flaggedMs !== null) summary += `; flagged at ${utcTime(flaggedMs, true)}`;

    const nodes = [svg("title", { id: titleId }, summary)];
    // horizontal grid with value labels
    for (let i = 0; i <= 3; i += 1) {
      const v = v0 + ((v1 - v0) * i) / 3;
      const yy = r(y(v));
      nodes.push(svg("line", { class: "grid", x1: M.l, x2: W - M.r, y1: yy, y2: yy }));
      nodes.push(svg("text", { class: "axis", x: M.l - 6, y: yy, "text-anchor": "end", "dominant-baseline": "middle" }, axisLabel(v, s.kind)));
    }
    // time labels
    const tickCount = Math.min(4, Math.max(1, pts.length - 1));
    for (let i = 0; i <= tickCount; i += 1) {
      const t = t0 + ((t1 - t0) * i) / tickCount;
      const anchor = i === 0 ? "start" : i === tickCount ? "end" : "middle";
      nodes.push(svg("text", { class: "axis", x: r(x(t)), y: H - 8, "text-anchor": anchor }, axisTime(t * 1000, t1 - t0)));
    }
    nodes.push(svg("path", { class: "area", d: area }));
    nodes.push(svg("path", { class: "line", d, "data-points": pts.length }));
    const lp = pts[pts.length - 1];
    nodes.push(svg("circle", { class: "last-point", cx: r(x(lp[0])), cy: r(y(lp[1])), r: 3 }));
    if (flaggedMs !== null) {
      const ft = flaggedMs / 1000;
      if (ft >= t0 && ft <= t1) {
        const fx = r(x(ft));
        const label = `flagged ${utcTime(flaggedMs, false)}`;
        const leftSide = x(ft) > M.l + pw * 0.75;
        nodes.push(
          svg(
            "g",
            { class: "flag-marker", "data-time": s.first_flagged_at },
            svg("line", { x1: fx, x2: fx, y1: M.t, y2: M.t + ph }),
            svg("text", { x: leftSide ? Number(fx) - 4 : Number(fx) + 4, y: M.t + 10, "text-anchor": leftSide ? "end" : "start" }, label),
          ),
        );
      }
    }
    return el(
      "figure",
      { class: "chart" },
      svg(
        "svg",
        {
          viewBox: `0 0 ${W} ${H}`,
          role: "img",
          "aria-labelledby": titleId,
          preserveAspectRatio: "xMidYMid meet",
          class: `chart-svg status-${STATUS[s.status] ? s.status : "unknown"}`,
        },
        nodes,
      ),
      el("figcaption", null, summary),
    );
  }

  function renderEvidence(s) {
    const ev = s.evidence && typeof s.evidence === "object" && !Array.isArray(s.evidence) ? s.evidence : null;
    if (!ev || !Object.keys(ev).length) return null;
    const rows = Object.entries(ev).map(([k, v]) => {
      let text;
      if (v === null || v === undefined) text = "\u2014";
      else if (typeof v === "object") text = JSON.stringify(v);
      else text = String(v);
      return el("div", { class: "ev-row" }, el("dt", null, k), el("dd", null, text));
    });
    return el("details", { class: "evidence" }, el("summary", null, "Evidence (detector numbers)"), el("dl", null, rows));
  }

  function renderResource(s) {
    const res = s.resource && typeof s.resource === "object" && !Array.isArray(s.resource) ? s.resource : null;
    if (!res) return null;
    const skip = new Set(["service.name", "service.instance.id"]);
    const items = Object.entries(res)
      .filter(([k]) => !skip.has(k))
      .slice(0, 8)
      .map(([k, v]) => el("li", null, el("span", { class: "rk" }, k), "=", el("span", { class: "rv" }, typeof v === "object" ? JSON.stringify(v) : String(v))));
    return items.length ? el("ul", { class: "resource", "aria-label": "Resource attributes" }, items) : null;
  }

  // The fix verification of a series restarted with a new version (the `fix` object, docs/analyze-json.md):
  // e.g. "Fixed: growth 14.6 MiB/h before v1.4.2, 0.1 MiB/h after".
  function renderFix(s) {
    const f = s.fix;
    if (!f || typeof f !== "object" || !f.before || typeof f.before !== "object") return null;
    const rate = (v) => (isNum(v) ? `${human(v, s.kind)}/h` : "\u2014");
    const version = typeof f.version === "string" ? f.version : "the new version";
    const age = duration(f.age_seconds);
    const span = age ? ` (both from start-up to ${age})` : "";
    const before = `growth ${rate(f.before.growth_per_hour)} before ${version}`;
    const verdicts = { fixed: "Fixed", not_fixed: "Not fixed", pending: "Fix pending" };
    const verdict = verdicts[f.verdict] || "Fix";
    let text;
    if (isNum(f.before.delay_rate)) {
      // Mutex and block: the lock delay rate from start-up to the same age, and each side's most contended site.
      const delay = (v) => (isNum(v) ? delayRate(v) : "\u2014");
      const top = (side) =>
        side.top_site ? `${side.top_site} ${isNum(side.top_site_share) ? fixed(side.top_site_share * 100, 0) : "?"}%` : "none";
      const beforeDelay = `lock delay ${delay(f.before.delay_rate)} before ${version}`;
      if (f.after && typeof f.after === "object") {
        text =
          `${verdict}: ${beforeDelay}, ${delay(f.after.delay_rate)} after${span}. ` +
          `Most contended: ${top(f.before)} before, ${top(f.after)} after.`;
      } else {
        text = `${verdict}: ${beforeDelay}; ${version} is compared at the same age${age ? ` (${age})` : ""}.`;
      }
    } else if (f.after && typeof f.after === "object") {
      text = `${verdict}: ${before}, ${rate(f.after.growth_per_hour)} after${span}.`;
    } else {
      text = `${verdict}: ${before}; ${version} is compared at the same age${age ? ` (${age})` : ""}.`;
    }
    const cls = f.verdict === "fixed" ? "fix fix-fixed" : f.verdict === "not_fixed" ? "fix fix-not-fixed" : "fix";
    return el("p", { class: cls, "data-verdict": String(f.verdict) }, text);
  }

  // The goroutine?debug=2 dump a scraped target's flagged series triggered (`targets[].dump` of the API):
  // its largest goroutine groups, so the queued or leaked goroutines are named next to the series.
  const DUMP_GROUPS_SHOWN = 5;

  function findDump(targets, service, instance) {
    const t = targets.find((x) => x && x.service === service && (x.instance || "") === instance && x.dump);
    return t && typeof t.dump === "object" && !Array.isArray(t.dump) ? t.dump : null;
  }

  function renderDump(dump, id, flagged) {
    if (!dump) return null;
    const when = isNum(dump.time) ? timeEl(new Date(dump.time * 1000).toISOString(), false) : "—";
    const trigger = dump.trigger ? String(dump.trigger) : "a flag";
    if (dump.error) {
      return el("p", { class: "dump dump-error" }, `Goroutine dump after ${trigger} failed: ${String(dump.error)}`);
    }
    const groups = Array.isArray(dump.groups) ? dump.groups.filter((g) => g && typeof g === "object") : [];
    const head = el(
      "tr",
      null,
      el("th", { scope: "col", class: "num" }, "Goroutines"),
      el("th", { scope: "col" }, "State"),
      el("th", { scope: "col" }, "Function (where they wait)"),
      el("th", { scope: "col" }, "Created by"),
      el("th", { scope: "col", class: "num" }, "Longest wait"),
    );
    const rows = groups.slice(0, DUMP_GROUPS_SHOWN).map((g) =>
      el(
        "tr",
        null,
        el("td", { class: "num" }, isNum(g.count) ? String(g.count) : "—"),
        el("td", { class: "state" }, g.state ? String(g.state) : "—"),
        el("td", { class: "fn", title: Array.isArray(g.stack) ? g.stack.join("\n") : "" }, breakable(String(g.function || "?"))),
        el("td", { class: "fn" }, g.creator ? breakable(String(g.creator)) : "—"),
        el("td", { class: "num" }, isNum(g.max_wait_minutes) && g.max_wait_minutes > 0 ? `${g.max_wait_minutes} min` : "< 1 min"),
      ),
    );
    const total = isNum(dump.goroutines) ? `${dump.goroutines} goroutines` : "goroutines";
    const groupsTotal = isNum(dump.groups_total) ? `, ${dump.groups_total} groups` : "";
    const userOpen = state.userToggled.get(id);
    const details = el(
      "details",
      { class: "dump", open: userOpen === undefined ? flagged : userOpen },
      el("summary", null, `Goroutine dump taken after ${trigger}: ${total}${groupsTotal}, largest groups first (`, when, ")"),
      groups.length ? el("table", { class: "growers dump-groups" }, el("thead", null, head), el("tbody", null, rows)) : null,
    );
    details.addEventListener("toggle", () => {
      if (details.open === flagged) state.userToggled.delete(id);
      else state.userToggled.set(id, details.open);
    });
    return details;
  }

  // The fix verdict in the folded head too: "fixed in v2", "v2 did not fix it", "fix pending: v2".
  function fixBadge(s) {
    const f = s.fix;
    if (!f || typeof f !== "object") return null;
    const version = typeof f.version === "string" ? f.version : "new version";
    const text = { fixed: `fixed in ${version}`, not_fixed: `${version} did not fix it`, pending: `fix pending: ${version}` }[f.verdict];
    return text ? el("span", { class: `head-fix head-fix-${String(f.verdict)}` }, text) : null;
  }

  function renderSeries(s) {
    const id = seriesId(s);
    const info = statusInfo(s.status);
    const flagged = info.rank <= 1;
    const userOpen = state.userToggled.get(id);
    const open = userOpen === undefined ? flagged : userOpen;
    const anchor = anchorFor(id);
    const kind = kindInfo(s.kind);
    const head = el(
      "summary",
      { class: "series-head" },
      badge(s.status),
      el("span", { class: "kind" }, kind.title),
      el("span", { class: "head-value" }, human(s.current, s.kind)),
      el("span", { class: "head-growth" }, growthText(s.growth_per_hour, s.kind)),
      isNum(s.time_to_limit_seconds) ? el("span", { class: "head-ttl" }, `limit in ${duration(s.time_to_limit_seconds)}`) : null,
      isNum(s.restarts) && s.restarts > 0
        ? el("span", { class: "head-restarts" }, `${s.restarts} restart${s.restarts === 1 ? "" : "s"}`)
        : null,
      fixBadge(s),
      el("a", { class: "permalink", href: `#${anchor}`, title: `Link to ${id}`, "aria-label": `Link to ${id}` }, "#"),
    );
    const reason = s.evidence && typeof s.evidence.reason === "string" ? s.evidence.reason : null;
    const details = el(
      "details",
      { class: "series-details", open: open },
      head,
      el(
        "div",
        { class: "series-body" },
        renderStats(s),
        reason ? el("p", { class: "reason" }, el("strong", null, "Note: "), reason) : null,
        renderFix(s),
        el("div", { class: "series-main" }, renderChart(s), el("div", { class: "growers-wrap" }, renderGrowers(s))),
        renderEvidence(s),
      ),
    );
    details.addEventListener("toggle", () => {
      // Remember only a choice that differs from the default, so a series that becomes flagged opens.
      if (details.open === flagged) state.userToggled.delete(id);
      else state.userToggled.set(id, details.open);
    });
    return el(
      "article",
      {
        class: `series status-${STATUS[s.status] ? s.status : "unknown"}`,
        id: anchor,
        "data-id": id,
        "data-status": String(s.status),
        "data-kind": String(s.kind),
        "aria-label": `${s.service || "?"} ${s.instance || ""} ${kind.title}: ${info.label}`,
      },
      details,
    );
  }

  function renderGroups(series, targets) {
    const groups = group(series);
    return groups.map((g) => {
      const total = g.all.length;
      const flaggedCount = g.all.filter((s) => statusInfo(s.status).rank <= 1).length;
      const headId = `svc-${encodeURIComponent(g.tenant + "/" + g.service).replace(/%/g, "_")}`;
      return el(
        "section",
        { class: "service", "aria-labelledby": headId, "data-service": g.service, "data-tenant": g.tenant },
        el(
          "h2",
          { id: headId, class: "service-head" },
          badge(g.worst.status),
          " ",
          el("span", { class: "service-name" }, g.service || "(unnamed service)"),
          g.tenant ? el("span", { class: "tenant" }, `tenant ${g.tenant}`) : null,
          el(
            "span",
            { class: "service-count" },
            `${total} series${flaggedCount ? `, ${flaggedCount} flagged` : ""}`,
          ),
        ),
        g.instances.map((inst) =>
          el(
            "div",
            { class: "instance", "data-instance": inst.instance },
            el(
              "h3",
              { class: "instance-head" },
              inst.instance ? ["instance ", el("span", { class: "instance-name" }, inst.instance)] : "no instance id (one series per service)",
            ),
            renderResource(inst.series[0]),
            renderDump(
              findDump(targets, g.service, inst.instance),
              `dump:${g.tenant}/${g.service}/${inst.instance}`,
              inst.series.some((s) => statusInfo(s.status).rank <= 1),
            ),
            inst.series.map(renderSeries),
          ),
        ),
      );
    });
  }

  function render(series, targets) {
    const main = document.getElementById("content");
    const scrollX = window.scrollX;
    const scrollY = window.scrollY;
    renderSummary(series);
    const children = series.length ? renderGroups(series, targets || []) : [renderEmpty()];
    main.replaceChildren(...children);
    main.setAttribute("aria-busy", "false");
    window.scrollTo(scrollX, scrollY);
    if (!state.scrolledToHash && location.hash && series.length) {
      state.scrolledToHash = true;
      const target = document.getElementById(location.hash.slice(1));
      if (target) {
        const details = target.querySelector("details.series-details");
        if (details && !details.open) details.open = true; // a link to a folded series opens it
        target.scrollIntoView();
      }
    }
  }

  // ---------- loading ----------

  function showBanner(message) {
    const banner = document.getElementById("banner");
    const text = String(message).trim();
    const parts = [el("strong", null, "Cannot load series: "), /[.!?]$/.test(text) ? text : `${text}.`];
    if (state.lastOkAt) {
      parts.push(` Showing data from ${utcTime(state.lastOkAt, false)} UTC (${ago(state.lastOkAt) || "earlier"}).`);
    }
    parts.push(" Retrying every 15 s.");
    banner.replaceChildren(...parts);
    banner.hidden = false;
  }

  function hideBanner() {
    const banner = document.getElementById("banner");
    banner.hidden = true;
    banner.replaceChildren();
  }

  // A page opened as http://user:pass@host/ carries credentials in its URL, and fetch() refuses a URL
  // with credentials: strip them; the browser sends the ones it holds for this origin (basic auth) anyway.
  function apiUrl() {
    const url = new URL(API_URL, document.baseURI);
    url.username = "";
    url.password = "";
    return url.href;
  }

  async function fetchSeries() {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), FETCH_TIMEOUT_MS);
    let resp;
    try {
      resp = await fetch(apiUrl(), {
        cache: "no-store",
        credentials: "same-origin",
        headers: { Accept: "application/json" },
        signal: ctrl.signal,
      });
    } catch (err) {
      throw new Error(err && err.name === "AbortError" ? "the server did not answer in time." : "the server is unreachable.");
    } finally {
      clearTimeout(timer);
    }
    const text = await resp.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch (_err) {
      body = null;
    }
    if (!resp.ok) {
      const detail = body && typeof body.message === "string" ? ` ${body.message}` : "";
      throw new Error(`HTTP ${resp.status} ${resp.statusText || ""}`.trim() + (detail ? ":" + detail : "."));
    }
    if (!body || !Array.isArray(body.series)) throw new Error("the answer is not a {\"series\": [...]} object.");
    return {
      series: body.series.filter((s) => s && typeof s === "object"),
      targets: Array.isArray(body.targets) ? body.targets.filter((t) => t && typeof t === "object") : [],
    };
  }

  async function refresh() {
    if (state.inFlight) return;
    state.inFlight = true;
    clearTimeout(state.timer);
    const updated = document.getElementById("updated");
    try {
      const data = await fetchSeries();
      state.lastOkAt = Date.now();
      hideBanner();
      render(data.series, data.targets);
      updated.textContent = `Updated ${utcTime(state.lastOkAt, false)} UTC`;
      updated.removeAttribute("data-stale");
    } catch (err) {
      showBanner(err instanceof Error ? err.message : String(err));
      updated.textContent = state.lastOkAt ? `Stale since ${utcTime(state.lastOkAt, false)} UTC` : "Not loaded";
      updated.setAttribute("data-stale", "true");
      const main = document.getElementById("content");
      if (!state.lastOkAt) {
        main.replaceChildren(el("p", { class: "muted" }, "No data loaded yet."));
        main.setAttribute("aria-busy", "false");
      }
    } finally {
      state.inFlight = false;
      state.refreshes += 1;
      document.documentElement.setAttribute("data-refreshes", String(state.refreshes));
      document.dispatchEvent(new CustomEvent("leakproc:rendered", { detail: { refreshes: state.refreshes } }));
      state.timer = setTimeout(refresh, REFRESH_MS);
    }
  }

  function start() {
    document.getElementById("refresh-now").addEventListener("click", () => refresh());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && state.lastOkAt && Date.now() - state.lastOkAt > REFRESH_MS) refresh();
    });
    refresh();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
