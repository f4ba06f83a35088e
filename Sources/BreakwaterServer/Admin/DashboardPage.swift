private import COpenSSL
import FoundationEssentials

/// The dashboard served at `GET /` on the admin listener: one page of HTML, CSS and JavaScript
/// that draws its charts as SVG itself and loads nothing from anywhere else.
///
/// It asks for the admin token once (or takes it from a `#token=...` fragment, which never
/// reaches a server, and removes it from the address bar), keeps it in the tab's sessionStorage,
/// and polls `/stats/series?since=T` and `/stats` every second. A Content-Security-Policy allows
/// only this page's own script and style (by their SHA-256), requests to its own origin, and no
/// framing, so a "forgive" button cannot be clicked through another site's frame.
enum DashboardPage {
    /// The response headers: type, the policy, no caching, no framing, no referrer.
    static let headers: [(String, String)] = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Security-Policy", "default-src 'none'; script-src '\(sha256(script))'; style-src '\(sha256(style))'; "
            + "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
        ("Cache-Control", "no-store"),
        ("X-Frame-Options", "DENY"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
    ]

    /// The whole page.
    static let bytes: [UInt8] = Array((head + "<style>" + style + "</style>\n</head>\n" + body
        + "<script>" + script + "</script>\n</body>\n</html>\n").utf8)

    /// `sha256-BASE64` of `text`, as a Content-Security-Policy source.
    static func sha256(_ text: String) -> String {
        let input = Array(text.utf8)
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        _ = EVP_Digest(input, input.count, &digest, &length, EVP_sha256(), nil)
        return "sha256-" + Data(digest.prefix(Int(length))).base64EncodedString()
    }

    private static let head = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Breakwater</title>

        """

    private static let style = """
        :root{color-scheme:light dark;--bg:#f4f6f8;--card:#fff;--fg:#1b2129;--muted:#5d6977;--line:#dfe4ea}
        @media (prefers-color-scheme:dark){:root{--bg:#12161b;--card:#1b2129;--fg:#e6ebf0;--muted:#96a3b0;--line:#2b333d}}
        *{box-sizing:border-box}
        body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;background:var(--bg);color:var(--fg)}
        header{display:flex;flex-wrap:wrap;gap:6px 18px;align-items:baseline;padding:10px 16px;background:var(--card);border-bottom:1px solid var(--line)}
        header h1{font-size:18px;margin:0 8px 0 0}
        header span{color:var(--muted)}
        header b{color:var(--fg);font-weight:600}
        header button{margin-left:auto}
        main{display:grid;gap:12px;padding:12px;grid-template-columns:repeat(auto-fit,minmax(340px,1fr))}
        section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 12px;min-width:0}
        section.wide{grid-column:1/-1}
        h2{font-size:14px;margin:0 0 8px;color:var(--muted);font-weight:600}
        .numbers{display:grid;grid-template-columns:repeat(auto-fit,minmax(130px,1fr));gap:8px}
        .numbers div{color:var(--muted);font-size:12px}
        .numbers b{display:block;font-size:24px;color:var(--fg);font-variant-numeric:tabular-nums}
        svg{width:100%;height:200px;display:block}
        .grid{stroke:var(--line)}
        .axis{fill:var(--muted);font-size:11px}
        .legend{margin-top:4px}
        .key{display:inline-flex;align-items:center;gap:4px;margin-right:10px;font-size:12px;color:var(--muted);white-space:nowrap}
        .key i{width:14px;height:3px;display:inline-block}
        .key i.dash{height:2px;opacity:.7}
        .scroll{overflow-x:auto}
        table{width:100%;border-collapse:collapse;font-variant-numeric:tabular-nums}
        th,td{padding:4px 8px;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap}
        th{color:var(--muted);font-weight:600;font-size:12px}
        td.mono{font-family:ui-monospace,monospace}
        ul{list-style:none;margin:0 0 12px;padding:0}
        li{padding:3px 0;display:flex;justify-content:space-between;gap:12px;border-bottom:1px solid var(--line)}
        .ok{color:#2e7d32}.bad{color:#c62828}.warn{color:#e65100}
        @media (prefers-color-scheme:dark){.ok{color:#81c784}.bad{color:#ef9a9a}.warn{color:#ffb74d}}
        button{font:inherit;padding:2px 10px;border-radius:4px;border:1px solid var(--line);background:var(--bg);color:var(--fg);cursor:pointer}
        #login{position:fixed;inset:0;background:rgba(0,0,0,.5);display:flex;align-items:center;justify-content:center}
        #login[hidden]{display:none}
        #login div{background:var(--card);padding:18px;border-radius:8px;width:min(420px,92vw)}
        #login input{width:100%;font:inherit;padding:6px;margin:8px 0}
        @media (max-width:600px){main{padding:6px;gap:8px;grid-template-columns:1fr}header{padding:8px}.numbers b{font-size:20px}}
        """

    private static let body = """
        <body>
        <header>
        <h1>Breakwater</h1>
        <span>version <b id="version">?</b></span>
        <span>up <b id="uptime">?</b></span>
        <span>Redis <b id="redis">?</b></span>
        <span id="status" class="warn">connecting</span>
        <button id="logout" type="button">forget token</button>
        </header>
        <main>
        <section class="wide"><h2>Now</h2><div class="numbers">
        <div>offered, req/s<b id="offered-now">0</b></div>
        <div>reaching the API, req/s<b id="forwarded-now">0</b></div>
        <div>answered by the shield, req/s<b id="shielded-now">0</b></div>
        <div>blocked clients<b id="blocked-now">0</b></div>
        <div>tracked clients<b id="tracked-now">0</b></div>
        <div>windows imposed<b id="windows-total">0</b></div>
        <div>evictions<b id="evictions">0</b></div>
        </div></section>
        <section class="wide"><h2>Requests per second by outcome, and upstream responses by class (dashed)</h2>
        <svg id="traffic" role="img" aria-label="requests per second"></svg><div class="legend" id="traffic-legend"></div></section>
        <section><h2>Blocked and tracked clients</h2>
        <svg id="clients" role="img" aria-label="clients"></svg><div class="legend" id="clients-legend"></div></section>
        <section><h2>Backoff windows imposed per second</h2>
        <svg id="windows" role="img" aria-label="windows imposed"></svg></section>
        <section><h2>Upstream servers</h2><ul id="servers"></ul>
        <h2>TLS certificates</h2><ul id="certificates"></ul><p id="certificates-empty">No TLS listener.</p></section>
        <section class="wide"><h2>Top offenders</h2><div class="scroll"><table id="offenders">
        <thead><tr><th>key (hashed)</th><th>route</th><th>level</th><th>errors</th><th>window left</th><th></th></tr></thead>
        <tbody></tbody></table></div><p id="offenders-empty">No client is being held back.</p></section>
        </main>
        <form id="login" hidden><div>
        <h2>Admin token</h2>
        <p id="login-message"></p>
        <input id="token" type="password" autocomplete="off" placeholder="admin.token">
        <button type="submit">Open</button>
        <p>Kept in this tab only (sessionStorage), sent as Authorization: Bearer.</p>
        </div></form>

        """

    private static let script = #"""
        "use strict";
        const STORE = "breakwater-admin-token";
        const OUTCOMES = [["forwarded", "#2e7d32"], ["shielded", "#c62828"], ["probe_wait", "#ef6c00"],
          ["rate_limited", "#6a1b9a"], ["bypassed", "#1565c0"], ["rejected", "#757575"], ["circuit_open", "#37474f"]];
        const CLASSES = [["2xx", "#81c784"], ["3xx", "#4fc3f7"], ["4xx", "#ffb74d"], ["5xx", "#e57373"],
          ["connect_error", "#a1887f"], ["timeout", "#ba68c8"]];
        const SPAN = 900;
        const $ = id => document.getElementById(id);
        let columns = null, points = [], last = 0;

        const fragment = /^#token=(.+)$/.exec(location.hash);
        if (fragment) {
          sessionStorage.setItem(STORE, decodeURIComponent(fragment[1]));
          history.replaceState(null, "", location.pathname);
        }
        const token = () => sessionStorage.getItem(STORE) || "";
        const auth = () => token() ? { Authorization: "Bearer " + token() } : {};

        async function get(path) {
          const r = await fetch(path, { headers: auth(), cache: "no-store" });
          if (r.status === 401) throw new Error("unauthorized");
          if (!r.ok) throw new Error(path + " answered " + r.status);
          return r.json();
        }

        function status(text, kind) { const s = $("status"); s.textContent = text; s.className = kind; }

        function askToken(message) {
          $("login-message").textContent = message;
          $("login").hidden = false;
          $("token").focus();
        }

        $("login").addEventListener("submit", e => {
          e.preventDefault();
          sessionStorage.setItem(STORE, $("token").value.trim());
          $("token").value = "";
          $("login").hidden = true;
          tick();
        });
        $("logout").addEventListener("click", () => { sessionStorage.removeItem(STORE); askToken("Token forgotten."); });

        async function tick() {
          try {
            const [series, stats] = await Promise.all([get("/stats/series?since=" + last), get("/stats")]);
            merge(series);
            render(stats);
            status("live", "ok");
          } catch (e) {
            if (e.message === "unauthorized") {
              askToken(token() ? "That token was refused." : "This admin listener needs its token.");
              status("locked", "warn");
            } else {
              status("no answer: " + e.message, "bad");
            }
          }
        }

        async function loop() {
          if ($("login").hidden) await tick();
          setTimeout(loop, 1000);
        }

        function merge(series) {
          columns = series.columns;
          for (const p of series.points) if (p[0] > last) { points.push(p); last = p[0]; }
          if (points.length > SPAN) points.splice(0, points.length - SPAN);
        }

        const column = name => { const i = columns.indexOf(name); return points.map(p => p[i]); };
        const latest = name => points.length ? points[points.length - 1][columns.indexOf(name)] : 0;

        function nice(v) {
          const p = Math.pow(10, Math.floor(Math.log10(v)));
          for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
          return 10 * p;
        }
        function short(v) {
          if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
          if (v >= 1e4) return (v / 1e3).toFixed(0) + "k";
          if (v >= 1e3) return (v / 1e3).toFixed(1) + "k";
          return String(Math.round(v * 10) / 10);
        }
        function duration(s) {
          s = Math.floor(s);
          const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
          return d ? d + "d " + h + "h" : h ? h + "h " + m + "m" : m ? m + "m " + s % 60 + "s" : s + "s";
        }

        const NS = "http://www.w3.org/2000/svg";
        function svg(name, attributes, parent, text) {
          const e = document.createElementNS(NS, name);
          for (const k in attributes) e.setAttribute(k, attributes[k]);
          if (text !== undefined) e.textContent = text;
          parent.appendChild(e);
          return e;
        }

        function chart(box, lines, bars) {
          box.replaceChildren();
          const W = Math.max(240, Math.round(box.getBoundingClientRect().width) || 640), H = 200, L = 44, R = 8, T = 8, B = 22;
          box.setAttribute("viewBox", "0 0 " + W + " " + H);
          const now = points.length ? points[points.length - 1][0] : Math.floor(Date.now() / 1000);
          // The last minute at first, growing a minute at a time up to the 15 minutes kept.
          const held = points.length ? now - points[0][0] : 0;
          const span = Math.min(SPAN, Math.max(60, Math.ceil(held / 60) * 60));
          const start = now - span;
          let max = 1;
          for (const l of lines) for (const v of l.values) if (v > max) max = v;
          max = nice(max);
          const x = t => L + (t - start) / span * (W - L - R);
          const y = v => T + (1 - v / max) * (H - T - B);
          for (const f of [0, 0.5, 1]) {
            svg("line", { x1: L, x2: W - R, y1: y(max * f), y2: y(max * f), class: "grid" }, box);
            svg("text", { x: L - 4, y: y(max * f) + 4, "text-anchor": "end", class: "axis" }, box, short(max * f));
          }
          for (const ago of [span, span * 2 / 3, span / 3, 0]) {
            const label = ago === 0 ? "now" : ago % 60 === 0 ? "-" + ago / 60 + "m" : "-" + Math.round(ago) + "s";
            const anchor = ago === span ? "start" : ago === 0 ? "end" : "middle";
            svg("text", { x: x(now - ago), y: H - 6, "text-anchor": anchor, class: "axis" }, box, label);
          }
          for (const l of lines) {
            if (bars) {
              const width = Math.max(1, (W - L - R) / span - 0.5);
              points.forEach((p, i) => {
                const v = l.values[i];
                if (v > 0 && p[0] > start) svg("rect", { x: x(p[0]) - width, y: y(v), width: width, height: y(0) - y(v), fill: l.color }, box);
              });
            } else if (points.length) {
              const d = points.map((p, i) => x(Math.max(p[0], start)).toFixed(1) + "," + y(l.values[i]).toFixed(1)).join(" ");
              svg("polyline", { points: d, fill: "none", stroke: l.color, "stroke-width": l.dash ? 1.5 : 2,
                "stroke-dasharray": l.dash ? "5 3" : "none", "stroke-linejoin": "round" }, box);
            }
          }
        }

        function legend(box, lines) {
          box.replaceChildren(...lines.map(l => {
            const key = document.createElement("span"), swatch = document.createElement("i");
            key.className = "key";
            swatch.style.background = l.color;
            if (l.dash) swatch.className = "dash";
            key.append(swatch, l.name);
            return key;
          }));
        }

        function item(name, value, kind) {
          const li = document.createElement("li"), a = document.createElement("span"), b = document.createElement("b");
          a.textContent = name;
          b.textContent = value;
          b.className = kind;
          li.append(a, b);
          return li;
        }

        function render(s) {
          $("version").textContent = s.version;
          $("uptime").textContent = duration(s.uptime_seconds);
          const redis = s.redis;
          $("redis").textContent = !redis.configured ? "not used" : redis.connected ? "connected"
            : "failing open (" + redis.links_connected + "/" + redis.links + " links)";
          $("redis").className = !redis.configured ? "" : redis.connected ? "ok" : "bad";
          $("blocked-now").textContent = s.blocked_clients;
          $("tracked-now").textContent = s.tracked_clients;
          $("windows-total").textContent = s.windows_imposed;
          $("evictions").textContent = s.evictions;
          if (columns) {
            $("offered-now").textContent = OUTCOMES.reduce((a, [n]) => a + latest(n), 0);
            $("forwarded-now").textContent = latest("forwarded") + latest("bypassed");
            $("shielded-now").textContent = latest("shielded") + latest("probe_wait") + latest("rate_limited");
            const traffic = OUTCOMES.map(([n, c]) => ({ name: n, color: c, values: column(n) }))
              .concat(CLASSES.map(([n, c]) => ({ name: "upstream " + n, color: c, dash: true, values: column(n) })));
            chart($("traffic"), traffic);
            legend($("traffic-legend"), traffic);
            const clients = [{ name: "blocked", color: "#c62828", values: column("blocked") },
              { name: "tracked", color: "#1565c0", values: column("tracked") }];
            chart($("clients"), clients);
            legend($("clients-legend"), clients);
            chart($("windows"), [{ name: "windows", color: "#ef6c00", values: column("windows") }], true);
          }
          $("offenders").tBodies[0].replaceChildren(...s.top.map(o => {
            const tr = document.createElement("tr");
            tr.dataset.key = o.key;
            [o.key, o.route, o.level, o.consecutive_errors, o.window_remaining_seconds.toFixed(1) + " s"].forEach((v, i) => {
              const td = document.createElement("td");
              td.textContent = v;
              if (i === 0) td.className = "mono";
              tr.appendChild(td);
            });
            const td = document.createElement("td"), button = document.createElement("button");
            button.textContent = "forgive";
            button.addEventListener("click", () => forgive(o.key, button));
            td.appendChild(button);
            tr.appendChild(td);
            return tr;
          }));
          $("offenders-empty").hidden = s.top.length > 0;
          $("servers").replaceChildren(...s.upstream_servers.map(u =>
            item(u.server, u.up ? "in rotation" : "out of rotation", u.up ? "ok" : "bad")));
          $("certificates").replaceChildren(...s.tls_certificates.map(c => {
            const days = (c.not_after - s.now) / 86400;
            const when = new Date(c.not_after * 1000).toISOString().slice(0, 10);
            return item(c.name, when + " (" + Math.floor(days) + " days)", days < 0 ? "bad" : days < 14 ? "warn" : "ok");
          }));
          $("certificates-empty").hidden = s.tls_certificates.length > 0;
        }

        async function forgive(key, button) {
          button.disabled = true;
          try {
            const r = await fetch("/clients/reset?key=" + encodeURIComponent(key), { method: "POST", headers: auth() });
            button.textContent = r.ok ? "forgiven" : "refused (" + r.status + ")";
          } catch (e) {
            button.textContent = "failed";
          }
          tick();
        }

        loop();
        """#
}
