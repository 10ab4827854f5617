// The kamal-proxy status page: polls status.json every second and draws it.
// Everything shown is set with textContent or setAttribute, never as HTML.
"use strict";
(function () {
  var SVG = "http://www.w3.org/2000/svg";
  var POLL_MS = 1000;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function badge(text) { return el("span", { "class": "badge " + String(text).replace(/[^a-z]/g, "") }, text); }

  function num(value, digits, unit) {
    if (value === null || value === undefined) { return "—"; }
    return Number(value).toFixed(digits) + (unit || "");
  }

  function pct(value) { return value === null || value === undefined ? "—" : (value * 100).toFixed(1) + "%"; }

  function when(epoch) {
    var d = new Date(epoch * 1000);
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  function fact(label, value) {
    var box = el("div", { "class": "fact" });
    box.appendChild(el("b", null, value));
    box.appendChild(el("span", null, label));
    return box;
  }

  // A small line chart of one or more series (arrays of numbers or null).
  function chart(title, lines) {
    var box = el("div", { "class": "chart" });
    var label = el("div", { "class": "label" });
    lines.forEach(function (line, i) {
      if (i) { label.appendChild(document.createTextNode(" · ")); }
      label.appendChild(el("span", { "class": "legend-" + line.key }, line.name + " " + line.now));
    });
    label.insertBefore(document.createTextNode(title + ": "), label.firstChild);
    box.appendChild(label);
    var w = 300, h = 56, pad = 4;
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", title);
    var max = 0;
    lines.forEach(function (line) { line.values.forEach(function (v) { if (v !== null && v > max) { max = v; } }); });
    max = max || 1;
    var base = document.createElementNS(SVG, "line");
    base.setAttribute("x1", "0"); base.setAttribute("x2", String(w));
    base.setAttribute("y1", String(h - pad)); base.setAttribute("y2", String(h - pad));
    base.setAttribute("stroke", "#e3e6eb");
    svg.appendChild(base);
    lines.forEach(function (line) {
      var n = line.values.length, points = [];
      line.values.forEach(function (v, i) {
        if (v === null) { return; }
        var x = pad + (n > 1 ? (i * (w - 2 * pad)) / (n - 1) : 0);
        var y = h - pad - (v / max) * (h - 2 * pad);
        points.push(x.toFixed(1) + "," + y.toFixed(1));
      });
      if (!points.length) { return; }
      var path = document.createElementNS(SVG, "polyline");
      path.setAttribute("points", points.join(" "));
      path.setAttribute("fill", "none");
      path.setAttribute("class", "line-" + line.key);
      path.setAttribute("stroke", line.color);
      path.setAttribute("stroke-width", "1.8");
      path.setAttribute("vector-effect", "non-scaling-stroke");
      svg.appendChild(path);
      // the newest point as a dot (a zero-length round-capped line keeps
      // its shape however the chart is stretched)
      var last = points[points.length - 1];
      var dot = document.createElementNS(SVG, "polyline");
      dot.setAttribute("points", last + " " + last);
      dot.setAttribute("stroke", line.color);
      dot.setAttribute("stroke-width", "6");
      dot.setAttribute("stroke-linecap", "round");
      dot.setAttribute("vector-effect", "non-scaling-stroke");
      svg.appendChild(dot);
    });
    box.appendChild(svg);
    return box;
  }

  function targetRows(tbody, targets, role) {
    targets.forEach(function (t) {
      var row = el("tr", { "class": "target", "data-target": t.address, "data-health": t.health });
      row.appendChild(el("td", { "class": "mono" }, t.address));
      row.appendChild(el("td", null, role));
      var cell = el("td");
      cell.appendChild(badge(t.health));
      row.appendChild(cell);
      tbody.appendChild(row);
    });
  }

  function serviceCard(s) {
    var card = el("article", { "class": "service", "data-service": s.name, "data-state": s.state });
    var title = el("h2");
    title.appendChild(el("span", { "class": "name" }, s.name));
    title.appendChild(badge(s.state));
    card.appendChild(title);
    var where = s.hosts.length ? s.hosts.join(", ") : "any host";
    if (s.path_prefixes.length && !(s.path_prefixes.length === 1 && s.path_prefixes[0] === "/")) {
      where += " · " + s.path_prefixes.join(", ");
    }
    card.appendChild(el("div", { "class": "hosts" }, where));
    var st = s.stats;
    var facts = el("div", { "class": "facts" });
    facts.appendChild(fact("req/s", num(st.rps, 1)));
    facts.appendChild(fact("p50", num(st.p50_ms, 1, " ms")));
    facts.appendChild(fact("p99", num(st.p99_ms, 1, " ms")));
    facts.appendChild(fact("errors", pct(st.error_rate)));
    facts.appendChild(fact("cache hits", pct(st.cache_hit_ratio)));
    card.appendChild(facts);
    var charts = el("div", { "class": "charts" });
    charts.appendChild(chart("Requests/s", [
      { key: "rps", name: "now", now: num(st.rps, 1), color: "#2563eb", values: st.series.map(function (p) { return p.rps; }) }
    ]));
    charts.appendChild(chart("Latency", [
      { key: "p50", name: "p50", now: num(st.p50_ms, 1, " ms"), color: "#0d9488", values: st.series.map(function (p) { return p.p50_ms; }) },
      { key: "p99", name: "p99", now: num(st.p99_ms, 1, " ms"), color: "#c2410c", values: st.series.map(function (p) { return p.p99_ms; }) }
    ]));
    card.appendChild(charts);
    var table = el("table", { "class": "targets" });
    var head = el("tr");
    ["Target", "Role", "Health"].forEach(function (h) { head.appendChild(el("th", null, h)); });
    table.appendChild(el("thead")).appendChild(head);
    var tbody = el("tbody");
    targetRows(tbody, s.targets, "serving");
    if (s.rollout) {
      var split = s.rollout.percentage === null || s.rollout.percentage === undefined ? "rollout" : "rollout " + s.rollout.percentage + "%";
      if (s.rollout.allowlist.length) { split += " + list"; }
      targetRows(tbody, s.rollout.targets, split);
    }
    table.appendChild(tbody);
    card.appendChild(table);
    var extra = [];
    if (s.tls) { extra.push("TLS certificate: " + (s.certificate || "pending")); }
    if (s.held_requests) { extra.push(s.held_requests + " requests held"); }
    if (s.rollout && s.rollout.allowlist.length) { extra.push("rollout list: " + s.rollout.allowlist.join(", ")); }
    if (extra.length) { card.appendChild(el("p", { "class": "muted" }, extra.join(" · "))); }
    return card;
  }

  function renderDeploys(deploys) {
    var tbody = document.querySelector("#deploys tbody");
    var rows = document.createDocumentFragment();
    if (!deploys.length) {
      var empty = el("tr");
      empty.appendChild(el("td", { "class": "empty", "colspan": "6" }, "No deploys since the proxy started."));
      rows.appendChild(empty);
    }
    deploys.forEach(function (d) {
      var row = el("tr", { "class": "deploy" });
      row.appendChild(el("td", null, when(d.started)));
      row.appendChild(el("td", null, d.service));
      row.appendChild(el("td", null, d.kind));
      row.appendChild(el("td", { "class": "mono" }, d.targets.join(", ")));
      var outcome = el("td");
      outcome.appendChild(badge(d.outcome));
      if (d.error) { outcome.appendChild(el("span", { "class": "muted" }, " " + d.error)); }
      row.appendChild(outcome);
      row.appendChild(el("td", null, num(d.duration, 1, " s")));
      rows.appendChild(row);
    });
    tbody.replaceChildren(rows);
  }

  function render(status) {
    var section = document.getElementById("services");
    var cards = document.createDocumentFragment();
    if (!status.services.length) { cards.appendChild(el("p", { "class": "empty" }, "No services deployed.")); }
    status.services.forEach(function (s) { cards.appendChild(serviceCard(s)); });
    section.replaceChildren(cards);
    renderDeploys(status.deploys);
    var unhealthy = 0;
    status.services.forEach(function (s) { s.targets.forEach(function (t) { if (t.health !== "healthy") { unhealthy += 1; } }); });
    document.getElementById("summary").textContent =
      status.services.length + (status.services.length === 1 ? " service · " : " services · ") + (unhealthy ? unhealthy + (unhealthy === 1 ? " unhealthy target" : " unhealthy targets") : "all targets healthy");
    document.getElementById("updated").textContent = "updated " + when(status.time);
  }

  function poll() {
    fetch("status.json", { cache: "no-store" })
      .then(function (r) { if (!r.ok) { throw new Error("status.json: " + r.status); } return r.json(); })
      .then(render)
      .catch(function () { document.getElementById("updated").textContent = "cannot reach the proxy; retrying"; })
      .then(function () { setTimeout(poll, POLL_MS); });
  }

  poll();
})();
