// Signoff dashboard: live queue over WS /api/v1/events, decisions without reloading.
// Plain JavaScript, no build step. The server renders every item (partials), so the
// rules about who may decide live in one place.
"use strict";

(function () {
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.content : "";
  const page = document.body.dataset.page;
  if (!csrf) return; // signed out: nothing live to do

  const settled = new Set(); // ids decided while this page was open
  const queue = document.getElementById("queue");

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
    const focused = document.activeElement;
    const hadFocus = focused && oldItem.contains(focused) && focused.id;
    oldItem.replaceWith(newItem);
    if (hadFocus) {
      const again = document.getElementById(focused.id);
      if (again) again.focus();
    }
  }

  function updateCount() {
    if (!queue) return;
    const n = queue.querySelectorAll("li.item").length;
    const count = document.getElementById("queue-count");
    if (count) count.textContent = String(n);
    const empty = document.getElementById("queue-empty");
    if (empty) empty.hidden = n > 0;
    document.title = (n ? "Queue (" + n + ")" : "Queue") + " · Signoff";
  }

  async function fetchText(url) {
    const resp = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (resp.status === 401) {
      location.href = "/login?next=" + encodeURIComponent(location.pathname);
      throw new Error("signed out");
    }
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    return resp.text();
  }

  async function resync() {
    if (!queue) return;
    const fresh = parseItems(await fetchText("/partials/queue")).filter(function (li) {
      return !settled.has(li.dataset.id);
    });
    const keep = new Set(fresh.map(function (li) { return li.id; }));
    queue.querySelectorAll("li.item").forEach(function (li) {
      if (!keep.has(li.id)) li.remove();
    });
    let previous = null;
    fresh.forEach(function (li) {
      const existing = document.getElementById(li.id);
      if (existing) {
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

  async function upsert(id, replace) {
    if (!queue || settled.has(id)) return;
    const existing = document.getElementById("req-" + id);
    if (existing && !replace) return;
    let items;
    try {
      items = parseItems(await fetchText("/partials/requests/" + encodeURIComponent(id)));
    } catch (err) {
      return;
    }
    const li = items[0];
    if (!li || settled.has(id)) return;
    const current = document.getElementById("req-" + id);
    if (li.dataset.status !== "pending") {
      if (current) current.remove();
    } else if (current) {
      carryOver(current, li);
    } else {
      queue.prepend(li);
    }
    updateCount();
    tick();
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
      upsert(msg.request_id, false);
    } else if (msg.request && msg.request.status === "pending") {
      upsert(msg.request_id, true); // a vote short of the quorum: show the progress
    } else if (msg.request) {
      settle(msg.request);
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
      } else if (msg.type && msg.type.indexOf("request.") === 0) {
        onEvent(msg);
      }
    };
    socket.onclose = function (ev) {
      socket = null;
      if (ev.code === 1008) {
        location.href = "/login?next=" + encodeURIComponent(location.pathname);
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
        upsert(body.request.id, true);
      }
    } catch (err) {
      buttons.forEach(function (b) { b.disabled = false; });
      if (error) {
        error.textContent = err.message === "Failed to fetch" ? "Could not reach Signoff; try again." : err.message;
        error.hidden = false;
      }
    }
  });

  if (page === "queue" || page === "detail") {
    tick();
    setInterval(tick, 1000);
    connect();
  }
})();
