// Signoff dashboard: live queue over WS /api/v1/events, decisions without reloading.
// Plain JavaScript, no build step. The server renders every item (partials) and pages
// the queue, so the rules about who may decide and what a search finds live in one place.
"use strict";

(function () {
  // Preferences of this browser: density now (before anything else is drawn).
  const store = {
    get: function (key) { try { return localStorage.getItem(key); } catch (err) { return null; } },
    set: function (key, value) { try { localStorage.setItem(key, value); } catch (err) { /* private mode */ } },
  };
  if (store.get("signoff.density") === "compact") document.documentElement.dataset.density = "compact";

  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.content : "";
  const page = document.body.dataset.page;
  if (!csrf) return; // signed out: nothing live to do

  const settled = new Set(); // ids decided while this page was open
  const queue = document.getElementById("queue");
  const search = queue ? queue.dataset.q || "" : "";
  const pagedView = queue ? queue.dataset.paged === "1" : false; // an "older requests" page
  let nextCursor = queue ? queue.dataset.next || "" : "";
  const PAGE = 25;

  function withSearch(url) {
    if (!search) return url;
    return url + (url.indexOf("?") < 0 ? "?" : "&") + "q=" + encodeURIComponent(search);
  }

  // ---- formatting (mirrors approvals/dashboard/present.py) ---------------------------
  function span(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    if (seconds < 60) return seconds + "s";
    let minutes = Math.floor(seconds / 60);
    seconds %= 60;
    if (minutes < 60) return minutes + "m " + String(seconds).padStart(2, "0") + "s";
    let hours = Math.floor(minutes / 60);
    minutes %= 60;
    if (hours < 48) return hours + "h " + String(minutes).padStart(2, "0") + "m";
    return Math.floor(hours / 24) + "d " + (hours % 24) + "h";
  }

  function tick() {
    const now = Date.now();
    document.querySelectorAll("#queue time.age[datetime]").forEach(function (el) {
      el.textContent = span((now - Date.parse(el.getAttribute("datetime"))) / 1000) + " ago";
    });
    document.querySelectorAll("#queue [data-expires]").forEach(function (el) {
      const left = (Date.parse(el.dataset.expires) - now) / 1000;
      el.textContent = left > 0 ? "expires in " + span(left) : "expiring now";
      el.classList.toggle("soon", left < 60);
    });
  }

  // ---- the queue --------------------------------------------------------------------
  function parseItems(html) {
    const template = document.createElement("template");
    template.innerHTML = html;
    return Array.from(template.content.querySelectorAll("li.item"));
  }

  function carryOver(oldItem, newItem) {
    // Keep what the person was typing, and their focus, when an item is re-rendered.
    oldItem.querySelectorAll("textarea[id]").forEach(function (oldText) {
      const newText = newItem.querySelector("#" + CSS.escape(oldText.id));
      if (newText && oldText.value !== oldText.defaultValue) newText.value = oldText.value;
    });
    const oldEdit = oldItem.querySelector("details.edit");
    const newEdit = newItem.querySelector("details.edit");
    if (oldEdit && newEdit) newEdit.open = oldEdit.open;
    // ...and whether it was selected for a decision on several.
    const oldPick = oldItem.querySelector("input.pick");
    const newPick = newItem.querySelector("input.pick");
    if (oldPick && newPick) newPick.checked = oldPick.checked;
    const focused = document.activeElement;
    const hadFocus = focused && oldItem.contains(focused) && focused.id;
    oldItem.replaceWith(newItem);
    if (hadFocus) {
      const again = document.getElementById(focused.id);
      if (again) again.focus();
    }
  }

  function setTotal(total) {
    const count = document.getElementById("queue-count");
    if (count) count.textContent = String(total);
    document.title = (total ? "Queue (" + total + ")" : "Queue") + " · Signoff";
  }

  function sameCard(shown, fresh) {
    // Compared without what only the live page changes (countdowns, the arrival mark).
    const strip = function (li) {
      const copy = li.cloneNode(true);
      delete copy.dataset.generation;
      copy.querySelectorAll("time.age, .expires").forEach(function (el) { el.textContent = ""; el.className = ""; });
      return copy.outerHTML;
    };
    return strip(shown) === strip(fresh);
  }

  function updateCount() {
    if (!queue) return;
    const n = queue.querySelectorAll("li.item").length;
    const empty = document.getElementById("queue-empty");
    if (empty) empty.hidden = n > 0;
    updatePicked();
    scheduleTotal();
  }

  // The total counts every matching pending request, shown or not: asked of the
  // server (once per burst of events), never guessed from the cards on screen.
  let totalTimer = null;
  function scheduleTotal() {
    if (totalTimer) return;
    totalTimer = setTimeout(function () {
      totalTimer = null;
      fetchPage(withSearch("/partials/queue?limit=1")).then(function (got) {
        setTotal(got.total);
      }).catch(function () {});
    }, 250);
  }

  function signedOut() {
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
  }

  async function fetchResponse(url) {
    const resp = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (resp.status === 401) {
      signedOut();
      throw new Error("signed out");
    }
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    return resp;
  }

  async function fetchText(url) {
    return (await fetchResponse(url)).text();
  }

  async function fetchPage(url) {
    const resp = await fetchResponse(url);
    return {
      items: parseItems(await resp.text()),
      total: Number(resp.headers.get("X-Queue-Total") || "0"),
      next: resp.headers.get("X-Next-Cursor") || "",
    };
  }

  function setNext(cursor) {
    nextCursor = cursor;
    const more = document.getElementById("more");
    if (more) more.hidden = !cursor;
  }

  // Items inserted by live events carry the generation they came in; a resync whose
  // snapshot was taken before they arrived must not remove them.
  let generation = 0;

  async function resync() {
    if (!queue || pagedView) return;
    const startedAt = generation;
    const shown = queue.querySelectorAll("li.item").length;
    const got = await fetchPage(withSearch("/partials/queue?limit=" + Math.max(PAGE, shown)));
    setTotal(got.total);
    setNext(got.next);
    const fresh = got.items.filter(function (li) {
      return !settled.has(li.dataset.id);
    });
    const keep = new Set(fresh.map(function (li) { return li.id; }));
    queue.querySelectorAll("li.item").forEach(function (li) {
      if (!keep.has(li.id) && Number(li.dataset.generation || 0) <= startedAt) li.remove();
    });
    let previous = null;
    fresh.forEach(function (li) {
      const existing = document.getElementById(li.id);
      if (existing && sameCard(existing, li)) {
        li = existing; // unchanged: keep the node (and what the person did with it)
      } else if (existing) {
        carryOver(existing, li);
      } else if (previous) {
        previous.after(li);
      } else {
        queue.prepend(li);
      }
      previous = li;
    });
    updateCount();
    tick();
  }

  async function loadMore(ev) {
    if (!queue || !nextCursor) return;
    ev.preventDefault();
    const more = document.getElementById("more");
    const got = await fetchPage(withSearch("/partials/queue?cursor=" + encodeURIComponent(nextCursor)));
    got.items.forEach(function (li) {
      if (!settled.has(li.dataset.id) && !document.getElementById(li.id)) queue.append(li);
    });
    setTotal(got.total);
    setNext(got.next);
    updateCount();
    tick();
    if (more && !more.hidden) more.focus();
  }

  async function upsert(id, replace, isNew) {
    if (!queue || settled.has(id)) return;
    const existing = document.getElementById("req-" + id);
    if (existing && !replace) return;
    let items;
    try {
      items = parseItems(await fetchText(withSearch("/partials/requests/" + encodeURIComponent(id))));
    } catch (err) {
      return;
    }
    const li = items[0];
    if (!li || settled.has(id)) return;
    if (isNew) notify(li);
    li.dataset.generation = String(++generation);
    const current = document.getElementById("req-" + id);
    if (li.dataset.status !== "pending" || li.dataset.match === "0") {
      if (current) current.remove();
    } else if (current) {
      carryOver(current, li);
    } else if (!pagedView) {
      queue.prepend(li);
    }
    updateCount();
    tick();
  }

  // ---- desktop notifications (opt-in, only while this tab is hidden) --------------------
  const notifyButton = document.getElementById("notify");
  function notifying() {
    return "Notification" in window && Notification.permission === "granted" &&
      store.get("signoff.notify") === "on";
  }
  function showNotifyState() {
    if (!notifyButton) return;
    notifyButton.hidden = !("Notification" in window);
    if (notifyButton.hidden) return;
    const blocked = Notification.permission === "denied";
    notifyButton.setAttribute("aria-pressed", notifying() ? "true" : "false");
    notifyButton.textContent = blocked ? "Notifications blocked by the browser"
      : notifying() ? "Desktop notifications on" : "Desktop notifications";
    notifyButton.disabled = blocked;
  }
  if (notifyButton) {
    notifyButton.addEventListener("click", async function () {
      if (notifying()) {
        store.set("signoff.notify", "off");
      } else {
        const answer = await Notification.requestPermission();
        store.set("signoff.notify", answer === "granted" ? "on" : "off");
      }
      showNotifyState();
    });
    showNotifyState();
  }

  function notify(li) {
    // A new request this person can decide, while they look elsewhere.
    if (!notifying() || document.visibilityState !== "hidden") return;
    if (li.dataset.status !== "pending" || li.dataset.canDecide !== "1") return;
    const reason = li.querySelector(".reason");
    const note = new Notification("Approval needed: " + li.dataset.tool, {
      body: li.dataset.caller + " asks" + (reason ? ": " + reason.textContent : ""),
      tag: "signoff-" + li.dataset.id,
    });
    note.onclick = function () {
      window.focus();
      location.href = "/requests/" + encodeURIComponent(li.dataset.id);
    };
  }

  // ---- density ------------------------------------------------------------------------------
  const densityButton = document.getElementById("density");
  function showDensity() {
    if (densityButton) {
      densityButton.setAttribute("aria-pressed", document.documentElement.dataset.density === "compact" ? "true" : "false");
    }
  }
  if (densityButton) {
    densityButton.addEventListener("click", function () {
      const compact = document.documentElement.dataset.density !== "compact";
      if (compact) document.documentElement.dataset.density = "compact";
      else delete document.documentElement.dataset.density;
      store.set("signoff.density", compact ? "compact" : "comfortable");
      showDensity();
    });
    showDensity();
  }

  // ---- selecting several ----------------------------------------------------------------------
  const bulk = document.getElementById("bulk");
  const pickAll = document.getElementById("pick-all");
  function picks() {
    return queue ? Array.from(queue.querySelectorAll("input.pick")) : [];
  }
  function updatePicked() {
    const label = document.getElementById("picked");
    if (!label) return;
    const all = picks();
    const n = all.filter(function (box) { return box.checked; }).length;
    label.textContent = n + " selected";
    if (pickAll) {
      pickAll.checked = n > 0 && n === all.length;
      pickAll.indeterminate = n > 0 && n < all.length;
    }
  }
  document.addEventListener("change", function (ev) {
    if (ev.target === pickAll) {
      picks().forEach(function (box) { box.checked = pickAll.checked; });
    }
    if (ev.target === pickAll || (ev.target.classList && ev.target.classList.contains("pick"))) updatePicked();
  });

  function cardLabel(id) {
    const li = document.getElementById("req-" + id);
    return li ? li.dataset.tool + " from " + li.dataset.caller + " (" + id + ")" : id;
  }

  function showBulkResult(results) {
    const box = document.getElementById("bulk-result");
    if (!box) return;
    box.replaceChildren();
    const refused = results.filter(function (r) { return !r.ok; });
    const recorded = results.length - refused.length;
    const head = document.createElement("p");
    head.textContent = "Recorded " + recorded + " of " + results.length + " vote" + (results.length === 1 ? "" : "s") + "." +
      (refused.length ? " Not recorded:" : "");
    box.append(head);
    if (refused.length) {
      const list = document.createElement("ul");
      refused.forEach(function (r) {
        const item = document.createElement("li");
        item.className = "refused";
        item.dataset.id = r.id;
        item.textContent = cardLabel(r.id) + ": " + r.message;
        list.append(item);
      });
      box.append(list);
    }
    box.hidden = false;
  }

  if (bulk) {
    bulk.addEventListener("submit", async function (ev) {
      ev.preventDefault();
      const data = new URLSearchParams(new FormData(bulk));
      if (ev.submitter && ev.submitter.name) data.set(ev.submitter.name, ev.submitter.value);
      const buttons = bulk.querySelectorAll("button");
      buttons.forEach(function (b) { b.disabled = true; });
      try {
        const resp = await fetch(bulk.action, {
          method: "POST",
          body: data,
          credentials: "same-origin",
          headers: { Accept: "application/json", "X-CSRF-Token": csrf },
        });
        if (resp.status === 401) { signedOut(); return; }
        const body = await resp.json().catch(function () { return {}; });
        if (!resp.ok) {
          const message = body.error && body.error.message ? body.error.message : "HTTP " + resp.status;
          showBulkResult([]);
          const box = document.getElementById("bulk-result");
          box.textContent = message.charAt(0).toUpperCase() + message.slice(1) + ".";
          return;
        }
        showBulkResult(body.results);
        body.results.forEach(function (r) {
          if (!r.ok) return;
          if (r.request.status !== "pending") settle(r.request);
          else upsert(r.id, true, false);
        });
        picks().forEach(function (box) { box.checked = false; });
        const comment = document.getElementById("bulk-comment");
        if (comment) comment.value = "";
        updatePicked();
      } catch (err) {
        const box = document.getElementById("bulk-result");
        if (box) { box.textContent = "Could not reach Signoff; try again."; box.hidden = false; }
      } finally {
        buttons.forEach(function (b) { b.disabled = false; });
      }
    });
  }

  function describe(req) {
    const by = req.decided_by || "someone";
    switch (req.status) {
      case "approved": return "approved by " + by + (req.channel ? " (via " + req.channel + ")" : "");
      case "rejected": return "rejected by " + by + (req.channel ? " (via " + req.channel + ")" : "");
      case "expired": return "expired: nobody decided in time";
      case "cancelled": return "cancelled by the caller";
      default: return req.status;
    }
  }

  function settle(req) {
    settled.add(req.id);
    const li = document.getElementById("req-" + req.id);
    if (li) {
      const focused = document.activeElement;
      const hadFocus = focused && li.contains(focused);
      const next = li.nextElementSibling || li.previousElementSibling;
      li.remove();
      if (hadFocus) {
        const target = next && next.querySelector("button, a");
        (target || document.getElementById("main")).focus();
      }
    }
    updateCount();
    const recent = document.getElementById("recent");
    const list = document.getElementById("recent-list");
    if (!recent || !list || !li) return;
    const note = document.createElement("li");
    note.className = "settled status-" + req.status;
    note.dataset.id = req.id;
    const tool = document.createElement("code");
    tool.textContent = req.tool;
    note.append(tool, " from " + req.caller + " was " + describe(req));
    if (req.comment && (req.status === "approved" || req.status === "rejected")) {
      const comment = document.createElement("q");
      comment.textContent = req.comment;
      note.append(": ", comment);
    }
    const link = document.createElement("a");
    link.href = "/requests/" + encodeURIComponent(req.id);
    link.textContent = "details";
    note.append(" · ", link);
    list.prepend(note);
    while (list.children.length > 5) list.lastElementChild.remove();
    recent.hidden = false;
  }

  // ---- live updates -------------------------------------------------------------------
  const status = document.getElementById("live-status");
  function setStatus(state, text) {
    if (!status) return;
    status.dataset.state = state;
    status.textContent = text;
  }

  let backoff = 1000;
  let heartbeat = 15;
  let lastMessage = Date.now();
  let socket = null;

  function onEvent(msg) {
    if (page === "detail") {
      const detail = document.getElementById("detail");
      if (detail && msg.request_id === detail.dataset.id && msg.type !== "request.created") {
        location.reload();
      }
      return;
    }
    if (msg.type === "request.created") {
      upsert(msg.request_id, false, true);
    } else if (msg.request && msg.request.status === "pending") {
      upsert(msg.request_id, true, false); // a vote short of the quorum: show the progress
    } else if (msg.request) {
      settle(msg.request);
    }
  }

  // ---- the Grants page ------------------------------------------------------------------
  // A grant.* event is only a signal: the list is fetched again from the server, which
  // decides what this person sees (several signals in a burst make one fetch).
  let grantsTimer = null;
  function refreshGrants() {
    if (page !== "grants" || grantsTimer) return;
    grantsTimer = setTimeout(async function () {
      grantsTimer = null;
      const list = document.getElementById("grants-list");
      if (!list) return;
      let resp;
      try { resp = await fetchResponse("/partials/grants"); } catch (err) { return; }
      list.innerHTML = await resp.text();
      const count = document.getElementById("grants-count");
      if (count) count.textContent = resp.headers.get("X-Grants-Total") || "0";
    }, 100);
  }

  // A grant that expires goes without any event: drop it from the list when it does.
  function expireGrants() {
    const now = Date.now();
    const rows = document.querySelectorAll("#grants tr[id^='grant-'] time[datetime]");
    for (const el of rows) {
      if (Date.parse(el.getAttribute("datetime")) <= now) { refreshGrants(); return; }
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/api/v1/events?csrf=" + encodeURIComponent(csrf));
    setStatus("connecting", "Connecting…");
    socket.onmessage = function (message) {
      lastMessage = Date.now();
      let msg;
      try { msg = JSON.parse(message.data); } catch (err) { return; }
      if (msg.type === "hello") {
        backoff = 1000;
        heartbeat = msg.heartbeat_seconds || heartbeat;
        setStatus("live", "Live");
        if (page === "queue") resync().catch(function () {});
        refreshGrants(); // events may have gone by while the socket was down
      } else if (msg.type && msg.type.indexOf("request.") === 0) {
        onEvent(msg);
      } else if (msg.type && msg.type.indexOf("grant.") === 0) {
        refreshGrants();
      }
    };
    socket.onclose = function (ev) {
      socket = null;
      if (ev.code === 1008) {
        signedOut();
        return;
      }
      setStatus("offline", "Reconnecting…");
      setTimeout(connect, backoff + Math.random() * 250);
      backoff = Math.min(backoff * 2, 30000);
    };
  }

  // A socket that went quiet for too long (no event, no ping) is replaced.
  setInterval(function () {
    if (socket && socket.readyState === WebSocket.OPEN && Date.now() - lastMessage > heartbeat * 2500) {
      socket.close();
    }
  }, 5000);

  // ---- decisions ------------------------------------------------------------------------
  const MAX_EDIT_BYTES = 64 * 1024; // approvals/edits.py MAX_EDIT_BYTES

  // Why the edited arguments cannot be sent, or "" when they can (the service checks again).
  function editProblem(text) {
    if (new TextEncoder().encode(text).length > MAX_EDIT_BYTES) {
      return "The edited arguments are over 64 KiB.";
    }
    let value;
    try { value = JSON.parse(text); } catch (err) {
      return "The edited arguments are not valid JSON: " + err.message;
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      return "The edited arguments must be a JSON object, like {\"key\": \"value\"}.";
    }
    return "";
  }

  document.addEventListener("submit", async function (ev) {
    const form = ev.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("decide")) return;
    ev.preventDefault();
    const data = new URLSearchParams(new FormData(form));
    if (ev.submitter && ev.submitter.name) data.set(ev.submitter.name, ev.submitter.value);
    const buttons = form.querySelectorAll("button");
    const error = form.querySelector(".error");
    if (data.get("decision") === "edit") {
      const problem = editProblem(data.get("arguments") || "");
      if (problem) {
        if (error) { error.textContent = problem; error.hidden = false; }
        const editor = form.querySelector(".edit-args");
        if (editor) { editor.setAttribute("aria-invalid", "true"); editor.focus(); }
        return;
      }
    } else {
      data.delete("arguments"); // only an edit sends arguments
    }
    buttons.forEach(function (b) { b.disabled = true; });
    if (error) error.hidden = true;
    try {
      const resp = await fetch(form.action, {
        method: "POST",
        body: data,
        credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRF-Token": csrf },
      });
      if (resp.status === 401) {
        location.href = "/login?next=" + encodeURIComponent(location.pathname);
        return;
      }
      const body = await resp.json().catch(function () { return {}; });
      if (!resp.ok) {
        const message = body.error && body.error.message ? body.error.message : "HTTP " + resp.status;
        throw new Error(message.charAt(0).toUpperCase() + message.slice(1));
      }
      if (page !== "queue") {
        location.reload();
      } else if (body.request.status !== "pending") {
        settle(body.request);
      } else {
        upsert(body.request.id, true, false);
      }
    } catch (err) {
      buttons.forEach(function (b) { b.disabled = false; });
      if (error) {
        error.textContent = err.message === "Failed to fetch" ? "Could not reach Signoff; try again." : err.message;
        error.hidden = false;
      }
    }
  });

  const more = document.getElementById("more");
  if (more) more.addEventListener("click", function (ev) { loadMore(ev).catch(function () {}); });

  if (page === "queue" || page === "detail") {
    tick();
    setInterval(tick, 1000);
    connect();
  } else if (page === "grants") {
    setInterval(expireGrants, 1000);
    connect();
  }
})();
