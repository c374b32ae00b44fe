// mailtrigger UI: small enhancements over server-rendered pages. Every page
// works without this script; it adds modal dialogs, live status, the Type
// switch, counters, Test connection and the flow editor's subject test.
"use strict";

(function () {
  document.documentElement.classList.add("js");
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  // What a form holds, to tell whether anything was typed since it was shown.
  function formState(form) {
    return JSON.stringify($$("input,select,textarea", form).filter((c) => c.name && c.type !== "hidden")
      .map((c) => (c.type === "checkbox" || c.type === "radio") ? c.checked : c.value));
  }

  // The "Discard changes?" question, asked before typed data is thrown away.
  // then runs when the user chooses to discard.
  function confirmDiscard(then) {
    const back = document.activeElement;
    const d = document.createElement("dialog");
    d.className = "confirm";
    d.id = "discard-dialog";
    d.setAttribute("aria-labelledby", "discard-title");
    d.innerHTML = '<h2 id="discard-title">Discard changes?</h2><p>What you typed in this form is lost.</p>' +
      '<div class="dialog-actions"><button type="button" class="btn" data-keep>Keep editing</button>' +
      '<button type="button" class="btn danger" data-discard>Discard</button></div>';
    document.body.append(d);
    const keep = () => { d.close(); d.remove(); if (back && back.focus) back.focus(); };
    $("[data-keep]", d).addEventListener("click", keep);
    $("[data-discard]", d).addEventListener("click", () => { d.close(); d.remove(); then(); });
    d.addEventListener("cancel", (e) => { e.preventDefault(); keep(); });
    d.showModal();
    $("[data-keep]", d).focus();
  }

  // Dialogs and panels rendered open become modal: focus stays inside,
  // Escape closes them, and closing goes to the page behind them. A panel
  // whose form holds typed data asks first.
  function initDialogs() {
    for (const d of $$("dialog[data-modal]")) {
      if (d.open) d.close();
      d.showModal();
      const summary = $("[data-focus]", d);
      if (summary) summary.focus();
      const form = $("form[data-keep-draft]", d);
      const initial = form ? formState(form) : "";
      let sending = false;
      if (form) form.addEventListener("submit", () => { sending = true; });
      const dirty = () => !!form && !sending && (form.hasAttribute("data-typed") || formState(form) !== initial);
      const go = () => { returnFocus(d.dataset.closeHref || "/"); location.href = d.dataset.closeHref || "/"; };
      const leave = () => { if (dirty()) confirmDiscard(go); else go(); };
      d.addEventListener("cancel", (e) => { e.preventDefault(); if (!$("#discard-dialog")) leave(); });
      d.addEventListener("click", (e) => {
        if (e.target !== d) return;
        const r = d.getBoundingClientRect();
        const inside = e.clientX >= r.left && e.clientX <= r.right && e.clientY >= r.top && e.clientY <= r.bottom;
        if (!inside) leave();
      });
      for (const a of $$("a[data-cancel]", d)) {
        a.addEventListener("click", (e) => { e.preventDefault(); leave(); });
      }
    }
  }

  // Where the focus goes back to after a dialog: the control that opened
  // it, remembered when it was clicked (see initOpeners).
  function returnFocus(href) {
    try {
      const o = JSON.parse(sessionStorage.getItem("opener") || "null");
      if (o && o.path === new URL(href, location.href).pathname) sessionStorage.setItem("focus", o.id);
    } catch (e) { /* storage unavailable: focus starts at the top */ }
  }

  // A link clicked is remembered as the opener of what it opens (a menu's
  // item by the menu's button), so that the focus can go back to it.
  function initOpeners() {
    document.addEventListener("click", (e) => {
      const a = e.target.closest("a[href]");
      if (!a) return;
      const more = a.closest("details.more");
      const el = more ? $("summary", more) : a;
      if (!el.id) return;
      try { sessionStorage.setItem("opener", JSON.stringify({ path: location.pathname, id: el.id })); } catch (err) { /* no storage */ }
    });
    // A dialog's form sent goes back to the page behind it too.
    for (const d of $$("dialog[data-modal]")) {
      for (const f of $$("form", d)) f.addEventListener("submit", () => returnFocus(d.dataset.closeHref || "/"));
    }
  }

  // Back from a dialog: the focus on its opener, when the page has it.
  function restoreFocus() {
    let id = null;
    try { id = sessionStorage.getItem("focus"); sessionStorage.removeItem("focus"); } catch (e) { return; }
    if (!id || $("dialog[open]")) return;
    const el = document.getElementById(id);
    if (el) el.focus();
  }

  // The Enabled switch of a card changes the configuration in place: no
  // reload, the focus stays on the switch.
  function initToggles() {
    for (const form of $$("form[data-toggle-form]")) {
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        const btn = $(".switch", form);
        let res;
        try {
          res = await fetch(form.action, {
            method: "POST",
            headers: { "Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded" },
            body: new URLSearchParams(new FormData(form)),
          });
        } catch (err) { form.submit(); return; }
        if (res.status === 401) { relogin(null); return; }
        if (!res.ok) { form.submit(); return; }
        const a = await res.json();
        const card = form.closest(".card");
        btn.setAttribute("aria-checked", a.enabled ? "true" : "false");
        btn.title = (a.enabled ? "Disable " : "Enable ") + a.name;
        $("input[name=enabled]", form).value = a.enabled ? "false" : "true";
        if (card) {
          card.classList.toggle("is-disabled", !a.enabled);
          showStatus(a.name, a.status);
          let w = $(".card-warn", card);
          if (a.warning) {
            if (!w) { w = document.createElement("p"); w.className = "card-warn"; $(".card-foot", card).before(w); }
            w.textContent = a.warning;
          } else if (w) w.remove();
        }
        const live = $("#live");
        if (live) live.textContent = a.message + (a.warning ? " " + a.warning : "");
      });
    }
  }

  // Forms keep a draft of what was typed (never a password) when sent: when
  // the session expired meanwhile, the login brings the user back with
  // #restore-draft and the draft is put back.
  function draftKey(form) { return "draft:" + form.getAttribute("action"); }

  function saveDraft(form) {
    const v = {};
    for (const c of $$("input,select,textarea", form)) {
      if (!c.name || c.type === "password" || c.type === "hidden" || c.disabled) continue;
      if (c.type === "checkbox") v[c.name] = c.checked;
      else if (c.type === "radio") { if (c.checked) v[c.name] = c.value; }
      else v[c.name] = c.value;
    }
    try { sessionStorage.setItem(draftKey(form), JSON.stringify(v)); } catch (e) { /* no storage */ }
  }

  // A script's request found the session expired: keep what the form holds
  // and log in again, coming back to this page with it.
  function relogin(form) {
    if (form) saveDraft(form);
    location.href = "/login?expired=1&next=" + encodeURIComponent(location.pathname + location.search + (form ? "#restore-draft" : ""));
  }

  function initDrafts() {
    for (const form of $$("form[data-keep-draft]")) {
      form.addEventListener("submit", () => saveDraft(form));
      if (location.hash !== "#restore-draft") continue;
      let v = null;
      try { v = JSON.parse(sessionStorage.getItem(draftKey(form)) || "null"); } catch (e) { /* none */ }
      history.replaceState(null, "", location.pathname + location.search);
      if (!v) continue;
      for (const c of $$("input,select,textarea", form)) {
        if (!(c.name in v) || c.type === "password" || c.type === "hidden") continue;
        if (c.type === "checkbox") c.checked = !!v[c.name];
        else if (c.type === "radio") c.checked = c.value === v[c.name];
        else c.value = v[c.name];
      }
      for (const c of $$("select,input[type=radio]", form)) c.dispatchEvent(new Event("change", { bubbles: true }));
      for (const c of $$("input,textarea", form)) c.dispatchEvent(new Event("input", { bubbles: true }));
      form.setAttribute("data-typed", "");
      const note = document.createElement("div");
      note.className = "flash warn";
      note.id = "restored-note";
      note.setAttribute("role", "alert");
      note.textContent = "Your session had expired, so nothing was saved. You are logged in again and what you typed is back; " +
        "type any password or secret again (they are never kept), then save.";
      const at = $(".panel-body", form) || $(".flow-main", form) || form;
      at.prepend(note);
    }
  }

  // Three-dots menus: one open at a time; Escape or a click elsewhere
  // closes; arrow keys move between the items.
  function initMenus() {
    const menus = $$("details.more");
    const closeAll = (except) => menus.forEach((m) => { if (m !== except) m.open = false; });
    for (const m of menus) {
      m.addEventListener("toggle", () => {
        if (m.open) {
          closeAll(m);
          const first = $("[role=menuitem]", m);
          if (first && m.dataset.kbd === "1") first.focus();
        }
      });
      const summary = $("summary", m);
      summary.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " " || e.key === "ArrowDown") m.dataset.kbd = "1";
        if (e.key === "ArrowDown" && !m.open) { e.preventDefault(); m.open = true; }
      });
      summary.addEventListener("pointerdown", () => { m.dataset.kbd = "0"; });
      m.addEventListener("keydown", (e) => {
        const items = $$("[role=menuitem]", m);
        const i = items.indexOf(document.activeElement);
        if (e.key === "Escape" && m.open) { e.preventDefault(); m.open = false; summary.focus(); }
        else if (e.key === "ArrowDown" && i >= 0) { e.preventDefault(); items[(i + 1) % items.length].focus(); }
        else if (e.key === "ArrowUp" && i >= 0) { e.preventDefault(); items[(i - 1 + items.length) % items.length].focus(); }
      });
    }
    document.addEventListener("click", (e) => {
      if (!e.target.closest("details.more")) closeAll(null);
    });
  }

  // The phone's menu: the button shows every section; Escape or a click
  // elsewhere closes it.
  function initNavMenu() {
    const btn = $("[data-nav-toggle]");
    if (!btn) return;
    const set = (open) => {
      document.body.classList.toggle("nav-open", open);
      btn.setAttribute("aria-expanded", open ? "true" : "false");
    };
    btn.addEventListener("click", () => {
      const open = btn.getAttribute("aria-expanded") !== "true";
      set(open);
      if (open) { const a = $("#sidebar .nav-link"); if (a) a.focus(); }
    });
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && document.body.classList.contains("nav-open")) { set(false); btn.focus(); }
    });
    document.addEventListener("click", (e) => {
      if (document.body.classList.contains("nav-open") && !e.target.closest("#sidebar,[data-nav-toggle]")) set(false);
    });
  }

  // Character counters for fields with a limit.
  function initCounters() {
    for (const c of $$("[data-counter-for]")) {
      const input = document.getElementById(c.dataset.counterFor);
      if (!input) continue;
      const max = parseInt(input.dataset.max, 10);
      const update = () => {
        const n = Array.from(input.value).length;
        c.textContent = n + " / " + max;
        c.classList.toggle("over", n > max);
      };
      input.addEventListener("input", update);
      update();
    }
  }

  // The IMAP form: the fields shown follow Type, Authentication and After
  // processing; hidden fields are disabled so that they are not sent.
  function initIMAPForm() {
    const form = $("[data-imap-form]");
    if (!form) return;
    const type = $("[data-type-switch]", form);
    // Each Type has its own Authentication choice.
    const authSels = $$("[data-auth-switch]", form);
    const authOf = (t) => {
      const sel = authSels.find((s) => { const g = s.closest("[data-for-type]"); return !g || g.dataset.forType === t; });
      return sel ? sel.value : "password";
    };
    const provSel = $("[data-provider-switch]", form);
    const signIn = $("[data-signin-button]", form);
    const after = $("[data-after-switch]", form);
    // data-for-auth and data-for-provider list the values they show for.
    const among = (list, v) => !list || list.split(" ").includes(v);
    const sync = () => {
      const t = type.value, a = authOf(t), pv = provSel ? provSel.value : "";
      if (signIn && provSel && provSel.selectedOptions[0]) signIn.textContent = "Sign in with " + provSel.selectedOptions[0].dataset.label;
      // POP3 has no flags and no folders: no "Mark as seen", no "Move".
      const server = $("input[name=serverType]:checked", form);
      const pop = t === "generic" && !!server && server.value === "pop3s";
      if (after) {
        for (const o of $$("option[data-not-pop3]", after)) { o.hidden = pop; o.disabled = pop; }
        if (pop && after.selectedOptions[0] && after.selectedOptions[0].disabled) after.value = "none";
      }
      const af = after ? after.value : "none";
      for (const el of $$("[data-for-type],[data-for-auth],[data-for-provider],[data-for-after]", form)) {
        const ok = (!el.dataset.forType || el.dataset.forType === t) &&
          among(el.dataset.forAuth, a) && among(el.dataset.forProvider, pv) &&
          (!el.dataset.forAfter || el.dataset.forAfter === af);
        el.hidden = !ok;
        if (el.tagName === "FIELDSET") el.disabled = !ok;
      }
      for (const c of $$("input,select,textarea", form)) {
        if (c.type === "hidden") continue;
        let hidden = false;
        for (let p = c; p && p !== form; p = p.parentElement) {
          if (p.hidden) { hidden = true; break; }
        }
        c.disabled = hidden;
      }
    };
    type.addEventListener("change", () => {
      // MS Graph signs in with Microsoft (or a custom provider), never Google.
      if (type.value === "msgraph" && provSel && provSel.value === "google") provSel.value = "microsoft";
      sync();
    });
    for (const s of authSels) s.addEventListener("change", sync);
    if (provSel) provSel.addEventListener("change", sync);
    if (after) after.addEventListener("change", sync);
    // Suggest the usual port of the server type chosen.
    const port = $("#f-port", form);
    for (const r of $$("input[name=serverType]", form)) {
      r.addEventListener("change", () => {
        const swap = r.value === "pop3s" ? { "993": "995", "143": "110" } : { "995": "993", "110": "143" };
        if (port && swap[port.value.trim()]) port.value = swap[port.value.trim()];
        sync();
      });
    }
    sync();

    const btn = $("[data-test-connection]", form);
    const out = $("#test-result", form);
    if (btn && out) {
      btn.addEventListener("click", async () => {
        // aria-disabled, not disabled: the button keeps the focus.
        if (btn.getAttribute("aria-disabled") === "true") return;
        out.hidden = false;
        out.className = "test-result busy";
        out.textContent = "Testing the connection: connect, TLS, log in, open the folder…";
        btn.setAttribute("aria-disabled", "true");
        try {
          const res = await fetch("/imap/test", {
            method: "POST",
            headers: { "Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded" },
            body: new URLSearchParams(new FormData(form)),
          });
          if (res.status === 401) { relogin(form); return; }
          const a = await res.json();
          out.textContent = "";
          const strong = document.createElement("strong");
          if (a.ok) {
            out.className = "test-result ok";
            strong.textContent = "✓ Connected. ";
            out.append(strong, "Logged in and opened the folder: " + a.messages + " message" + (a.messages === 1 ? "" : "s") + " in it.");
            if (a.capabilities && a.capabilities.length) {
              const caps = document.createElement("span");
              caps.className = "caps";
              caps.textContent = "Capabilities: " + a.capabilities.join(" ");
              out.append(caps);
            }
          } else if (a.fields) {
            out.className = "test-result bad";
            strong.textContent = "✗ " + a.error + " ";
            out.append(strong, Object.entries(a.fields).map(([k, v]) => label(form, k) + ": " + v).join("; "));
          } else {
            out.className = "test-result bad";
            strong.textContent = "✗ Failed" + (a.step ? " at step " + a.step : "") + ": ";
            out.append(strong, a.error || "unknown error");
          }
        } catch (err) {
          out.className = "test-result bad";
          out.textContent = "✗ The test could not be run: " + err;
        } finally {
          btn.removeAttribute("aria-disabled");
        }
      });
    }
  }

  function label(form, key) {
    const input = $$("[name='" + key + "']", form).find((c) => !c.disabled);
    const l = input && input.id ? $("label[for='" + input.id + "']", form) : null;
    return l ? l.textContent.replace("*", "").trim() : key;
  }

  // A link of an error summary goes to the field shown, also where two
  // fields share a name (the User Name of each Type).
  function initErrorSummary() {
    for (const a of $$(".error-summary a[href^='#f-']")) {
      a.addEventListener("click", (e) => {
        const form = a.closest("form") || document;
        const key = a.getAttribute("href").slice(3);
        const field = $$("[name='" + CSS.escape(key) + "']", form).find((c) => !c.disabled && c.type !== "hidden") ||
          document.getElementById("f-" + key);
        if (field) { e.preventDefault(); field.focus(); field.scrollIntoView({ block: "center" }); }
      });
    }
  }

  // A field marked "required" (or "type it again") stops being marked once
  // it is filled: its message and its line in the summary go.
  function initStaleErrors() {
    for (const f of $$("[aria-invalid=true][name]")) {
      const err = document.getElementById("e-" + f.name);
      if (!err || !/^(required|type it again)/.test(err.textContent.trim())) continue;
      f.addEventListener("input", () => {
        if (f.value.trim() === "" || f.getAttribute("aria-invalid") !== "true") return;
        f.removeAttribute("aria-invalid");
        err.hidden = true;
        const form = f.closest("form") || document;
        const sum = $(".error-summary", form);
        if (!sum) return;
        for (const a of $$("a[href='#f-" + CSS.escape(f.name) + "']", sum)) a.closest("li").remove();
        const n = $$("li", sum).length;
        if (n === 0) { sum.hidden = true; return; }
        $("p strong", sum).textContent = n + " field" + (n === 1 ? " needs" : "s need") + " attention";
      });
    }
  }

  // Ok stays disabled until the fields it needs are filled.
  function initRequireFilled() {
    for (const form of $$("form[data-require-filled]")) {
      const ok = $("[data-ok]", form);
      const fields = $$("[data-fill]", form);
      const update = () => { ok.disabled = fields.some((f) => f.value === ""); };
      fields.forEach((f) => f.addEventListener("input", update));
      form.addEventListener("submit", (e) => { if (ok.disabled) e.preventDefault(); });
      update();
    }
  }

  // A configuration's status on the cards: badge, reason, progress.
  function showStatus(name, it) {
    if (!it) return;
    for (const b of $$("[data-status-for='" + CSS.escape(name) + "']")) {
      b.className = "badge " + it.class;
      b.title = it.detail;
      $(".badge-label", b).textContent = it.label;
    }
    for (const r of $$("[data-reason-for='" + CSS.escape(name) + "']")) {
      const text = it.class === "ok" || it.class === "busy" ? "" : it.detail + (it.reason ? " " + it.reason : "");
      r.textContent = text;
      r.title = text;
      r.hidden = text === "";
      r.className = "card-reason " + it.class;
    }
    for (const s of $$("[data-since-for='" + CSS.escape(name) + "']")) {
      const d = new Date(it.since || "");
      s.textContent = isNaN(d) ? "" : "since " + clock(d);
      s.title = isNaN(d) ? "" : exact(d);
    }
    for (const p of $$("[data-progress-for='" + CSS.escape(name) + "']")) {
      p.hidden = !it.total;
      if (it.total) { p.max = it.total; p.value = it.done; }
    }
  }

  // Live status badges on the cards page.
  function initStatusPoll() {
    const list = $("[data-status-poll]");
    if (!list) return;
    const url = list.dataset.statusPoll;
    const poll = async () => {
      if (document.hidden) return;
      try {
        const res = await fetch(url, { headers: { "Accept": "application/json" } });
        if (res.status === 401) { relogin($("form[data-keep-draft]")); return; }
        if (!res.ok) return;
        const data = await res.json();
        for (const it of data.items) showStatus(it.name, it);
      } catch (e) { /* offline for a moment: try again next time */ }
    };
    setInterval(poll, parseInt(list.dataset.pollMs || "4000", 10));
  }

  // The flow editor's "test a subject" box.
  function initMatch() {
    const form = $("[data-flow-form]");
    const out = $("#match-result");
    if (!form || !out) return;
    let timer = null, seq = 0;
    const check = async () => {
      const test = $("#f-testSubject", form).value;
      if (test === "") {
        out.className = "match-result";
        out.textContent = "Type a subject to see whether it would start this flow.";
        return;
      }
      const q = new URLSearchParams({
        subject: $("#f-subject", form).value,
        match: $("#f-match", form).value,
        from: $("#f-from", form).value,
        test: test,
        sender: $("#f-testSender", form).value,
      });
      if ($("[name=ignoreReplyPrefixes]", form).checked) q.set("ignoreReplyPrefixes", "1");
      const mine = ++seq;
      try {
        const res = await fetch("/flows/match?" + q, { headers: { "Accept": "application/json" } });
        if (res.status === 401) { relogin(form); return; }
        const a = await res.json();
        if (mine !== seq) return;
        if (a.error) { out.className = "match-result bad"; out.textContent = a.error; }
        else if (a.matched) { out.className = "match-result yes"; out.textContent = "✓ Would start this flow: " + a.reason + "."; }
        else { out.className = "match-result no"; out.textContent = "✗ Would not start this flow: " + a.reason + "."; }
      } catch (e) { /* try again on the next keystroke */ }
    };
    for (const el of $$("[data-match-input]", form)) {
      el.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(check, 150); });
      el.addEventListener("change", () => { clearTimeout(timer); timer = setTimeout(check, 0); });
    }
    check();
  }

  function initCopy() {
    for (const b of $$("[data-copy]")) {
      b.addEventListener("click", async () => {
        const input = document.getElementById(b.dataset.copy);
        input.select();
        try { await navigator.clipboard.writeText(input.value); } catch (e) { document.execCommand("copy"); }
        b.textContent = "Copied";
      });
    }
  }

  // Times in the browser's time zone, to the second; a time marked data-rel
  // as "2 min ago", the exact time on hover.
  function exact(d) {
    const opts = { month: "short", day: "numeric", hour: "numeric", minute: "2-digit", second: "2-digit" };
    if (d.getFullYear() !== new Date().getFullYear()) opts.year = "numeric";
    return d.toLocaleString(undefined, opts);
  }

  // A time of day (with the date when it is not today), for "since 10:02".
  function clock(d) {
    const opts = { hour: "2-digit", minute: "2-digit" };
    if (d.toDateString() !== new Date().toDateString()) { opts.month = "short"; opts.day = "numeric"; }
    return d.toLocaleString(undefined, opts);
  }

  function relative(d) {
    const s = Math.round((Date.now() - d.getTime()) / 1000);
    if (s < 0) return exact(d);
    if (s < 10) return "just now";
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return exact(d);
  }

  function initTimes() {
    const show = () => {
      for (const t of $$("time[datetime]")) {
        const d = new Date(t.getAttribute("datetime"));
        if (isNaN(d)) continue;
        if (t.hasAttribute("data-rel")) { t.textContent = relative(d); t.title = exact(d); }
        else if (t.hasAttribute("data-clock")) { t.textContent = clock(d); t.title = exact(d); }
        else t.textContent = exact(d);
      }
    };
    show();
    if ($("time[data-rel]")) setInterval(show, 30000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    // A page answering a form: its own address in the address bar, so that
    // a reload does not send the form again (post/redirect/get).
    const canon = document.body.dataset.canonical;
    if (canon) history.replaceState(null, "", canon);
    // The page that goes on to a provider's sign-in page (a script's
    // navigation: the form-action policy stops a form's redirect there).
    const go = document.querySelector("a[data-navigate]");
    if (go) { location.assign(go.href); return; }
    initTimes();
    initNavMenu();
    initMenus();
    initCounters();
    initIMAPForm();
    initDrafts();
    initRequireFilled();
    initErrorSummary();
    initStaleErrors();
    initStatusPoll();
    initMatch();
    initCopy();
    initOpeners();
    initToggles();
    initDialogs();
    restoreFocus();
  });
})();
