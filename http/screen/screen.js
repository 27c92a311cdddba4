// The live-room big screen: /live/{room} for one room, /live for the whole platform. The
// access token comes in the address's fragment (#token=…), which the browser never sends.
(function () {
  "use strict";
  var parts = location.pathname.split("/").filter(Boolean);
  var room = parts.length > 1 ? decodeURIComponent(parts[1]) : "";
  var token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
  var $ = function (id) { return document.getElementById(id); };
  $("title").textContent = room ? "Live room " + room : "Surge live: all rooms";
  document.title = $("title").textContent;

  var fmt = new Intl.NumberFormat("en-US");
  function money(minor) { return "¥" + fmt.format(Math.round(minor / 100)); }

  function chart(id, points) {
    var line = $(id).querySelector("polyline");
    if (!points || points.length < 2) { line.setAttribute("points", ""); return; }
    var vals = points.map(function (p) { return p.v; });
    var lo = Math.min.apply(null, vals), hi = Math.max.apply(null, vals);
    var box = $(id).viewBox.baseVal, span = hi - lo || 1;
    line.setAttribute("points", vals.map(function (v, i) {
      return (i * box.width / (vals.length - 1)).toFixed(1) + "," + (box.height - 4 - (v - lo) * (box.height - 8) / span).toFixed(1);
    }).join(" "));
  }

  function render(s) {
    $("gmv").textContent = money(s.gmv);
    ["orders", "units_sold", "paying_users", "online_viewers", "likes", "comments", "shares"].forEach(function (k) {
      $(k).textContent = fmt.format(s[k]);
    });
    $("funnel").textContent = s.funnel.clicks ? (100 * s.funnel.payments / s.funnel.clicks).toFixed(1) + "%" : "—";
    var list = $("top_items");
    list.textContent = "";
    (s.top_items || []).forEach(function (it) {
      var li = document.createElement("li");
      li.textContent = (it.name || "SKU " + it.sku) + " ";
      var n = document.createElement("span");
      n.textContent = fmt.format(it.units);
      li.appendChild(n);
      list.appendChild(li);
    });
    chart("gmv_chart", s.gmv_series.map(function (p, i, a) { return { v: a.slice(0, i + 1).reduce(function (t, q) { return t + q.v; }, 0) }; }));
    chart("viewer_chart", s.viewer_series);
  }

  // The stream is opened with a ticket good for a minute: the access token itself never goes
  // into an address the server sees. A stream that fails is opened again with a new ticket.
  function connect() {
    fetch("/v1/live/tickets?room=" + encodeURIComponent(room), { method: "POST", headers: { Authorization: "Bearer " + token } })
      .then(function (r) { if (!r.ok) { throw new Error("ticket " + r.status); } return r.json(); })
      .then(function (t) {
        var es = new EventSource("/v1/live/stream?room=" + encodeURIComponent(room) + "&ticket=" + encodeURIComponent(t.ticket));
        es.addEventListener("screen", function (ev) {
          $("status").textContent = "live";
          $("status").className = "status live";
          render(JSON.parse(ev.data));
        });
        es.onerror = function () { es.close(); retry(); };
      })
      .catch(retry);
  }

  function retry() {
    $("status").textContent = "reconnecting…";
    $("status").className = "status";
    setTimeout(connect, 2000);
  }

  function tick() { $("clock").textContent = new Date().toLocaleTimeString(); }
  tick();
  setInterval(tick, 1000);
  connect();
})();
