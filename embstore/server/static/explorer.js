// embstore explorer: type-ahead for the item box, submit on select change,
// and table rows <-> map points highlighting. The page works without it.
(function () {
  "use strict";
  var form = document.getElementById("controls");
  var q = document.getElementById("q");
  var list = document.getElementById("suggestions");
  var ref = document.getElementById("ref");
  var itemId = document.getElementById("item-id");
  if (!form) return;

  var colorValue = document.getElementById("color-value");
  document.querySelectorAll("select.autosubmit").forEach(function (el) {
    el.addEventListener("change", function () {
      // a value of the previous colour column means nothing for the new one
      if (el.id === "color" && colorValue) { colorValue.value = ""; }
      form.submit();
    });
  });

  function hrefFor(id) {
    var params = new URLSearchParams(new FormData(form));
    params.delete("q");
    params.set("id", id);
    return "/explorer?" + params.toString();
  }

  var timer = null, seq = 0, active = -1;
  function hide() { list.hidden = true; list.innerHTML = ""; active = -1; }
  function show(items) {
    list.innerHTML = "";
    items.forEach(function (it) {
      var li = document.createElement("li");
      var a = document.createElement("a");
      a.href = hrefFor(it.id);
      a.textContent = it.label;
      var small = document.createElement("span");
      small.className = "sid";
      small.textContent = "id " + it.id;
      a.appendChild(small);
      li.appendChild(a);
      list.appendChild(li);
    });
    list.hidden = items.length === 0;
    active = -1;
  }
  if (q && list && ref) {
    q.addEventListener("input", function () {
      if (itemId) { itemId.disabled = true; }  // a new text names a new item
      clearTimeout(timer);
      var text = q.value.trim();
      if (!text) { hide(); return; }
      timer = setTimeout(function () {
        var mine = ++seq;
        fetch("/explorer/suggest?ref=" + encodeURIComponent(ref.value) + "&q=" + encodeURIComponent(text))
          .then(function (r) { return r.ok ? r.json() : []; })
          .then(function (items) { if (mine === seq) show(items); })
          .catch(function () { hide(); });
      }, 120);
    });
    q.addEventListener("keydown", function (ev) {
      var links = list.querySelectorAll("a");
      if (list.hidden || !links.length) return;
      if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
        ev.preventDefault();
        active = (active + (ev.key === "ArrowDown" ? 1 : links.length - 1)) % links.length;
        links.forEach(function (a, i) { a.classList.toggle("active", i === active); });
      } else if (ev.key === "Enter" && active >= 0) {
        ev.preventDefault();
        window.location = links[active].href;
      } else if (ev.key === "Escape") {
        hide();
      }
    });
    document.addEventListener("click", function (ev) { if (!list.contains(ev.target) && ev.target !== q) hide(); });
  }

  // hovering a neighbour row highlights its point on the map, and back
  function marks(id) { return document.querySelectorAll('#map-svg [data-id="' + CSS.escape(id) + '"]'); }
  document.querySelectorAll("table.neighbours tbody tr").forEach(function (tr) {
    tr.addEventListener("mouseenter", function () { marks(tr.dataset.id).forEach(function (m) { m.classList.add("hover"); }); });
    tr.addEventListener("mouseleave", function () { marks(tr.dataset.id).forEach(function (m) { m.classList.remove("hover"); }); });
  });
  document.querySelectorAll("#map-svg [data-id]").forEach(function (m) {
    var rows = function () { return document.querySelectorAll('table.neighbours tr[data-id="' + CSS.escape(m.dataset.id) + '"]'); };
    m.addEventListener("mouseenter", function () { rows().forEach(function (r) { r.classList.add("hover"); }); });
    m.addEventListener("mouseleave", function () { rows().forEach(function (r) { r.classList.remove("hover"); }); });
  });
})();
