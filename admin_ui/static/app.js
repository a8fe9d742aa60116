// modelport admin UI: copy buttons, the channel type hint, and the streaming playground chat.
// Everything else is plain forms and htmx.
(function () {
  "use strict";
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  function initCopy(root) {
    root.querySelectorAll("[data-copy]").forEach((btn) => {
      btn.addEventListener("click", async () => {
        const input = document.querySelector(btn.dataset.copy);
        input.select();
        try {
          await navigator.clipboard.writeText(input.value);
        } catch (e) {
          document.execCommand("copy");
        }
        btn.textContent = "Copied";
      });
    });
  }

  function initTypeHint() {
    const select = document.getElementById("type");
    const hint = document.getElementById("type-hint");
    const base = document.getElementById("base_url");
    if (!select || !hint || !base) return;
    const update = () => {
      const o = select.selectedOptions[0];
      const parts = [];
      if (o.dataset.hint) parts.push(o.dataset.hint);
      if (o.dataset.base) parts.push("default: " + o.dataset.base);
      if (o.dataset.kind === "litellm") parts.push("translated by litellm");
      hint.textContent = parts.join(" · ");
      base.placeholder = o.dataset.base || "https://api.example.com/v1";
    };
    select.addEventListener("change", update);
    update();
  }

  function initChat() {
    const form = document.getElementById("chat-form");
    if (!form) return;
    const log = document.getElementById("chat-log");
    const input = document.getElementById("chat-input");
    const status = document.getElementById("chat-status");
    const send = document.getElementById("chat-send");
    let history = [];

    function bubble(role, text) {
      const div = document.createElement("div");
      div.className = "msg " + role;
      const who = document.createElement("b");
      who.textContent = role + ": ";
      const body = document.createElement("span");
      body.textContent = text;
      div.append(who, body);
      log.append(div);
      log.scrollTop = log.scrollHeight;
      return body;
    }

    document.getElementById("chat-clear").addEventListener("click", () => {
      history = [];
      log.textContent = "";
    });

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      history.push({ role: "user", content: text });
      bubble("user", text);
      input.value = "";
      const messages = [];
      const system = document.getElementById("chat-system").value.trim();
      if (system) messages.push({ role: "system", content: system });
      const body = {
        model: document.getElementById("chat-model").value,
        messages: messages.concat(history),
        temperature: parseFloat(document.getElementById("chat-temp").value),
        max_tokens: parseInt(document.getElementById("chat-max").value, 10),
      };
      const out = bubble("assistant", "");
      send.disabled = true;
      status.textContent = "waiting…";
      let reply = "";
      try {
        const resp = await fetch("/ui/playground/chat", {
          method: "POST",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
          body: JSON.stringify(body),
        });
        if (!resp.ok) {
          const err = await resp.json().catch(() => ({}));
          throw new Error((err.error && err.error.message) || "HTTP " + resp.status);
        }
        const reader = resp.body.getReader();
        const decoder = new TextDecoder();
        let buf = "";
        status.textContent = "streaming…";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += decoder.decode(value, { stream: true });
          let idx;
          while ((idx = buf.indexOf("\n")) >= 0) {
            const line = buf.slice(0, idx).trim();
            buf = buf.slice(idx + 1);
            if (!line.startsWith("data:")) continue;
            const data = line.slice(5).trim();
            if (data === "[DONE]") continue;
            let obj;
            try { obj = JSON.parse(data); } catch (e) { continue; }
            if (obj.error) throw new Error(obj.error.message || "stream error");
            const delta = obj.choices && obj.choices[0] && obj.choices[0].delta;
            if (delta && delta.content) {
              reply += delta.content;
              out.textContent = reply;
            }
          }
        }
        history.push({ role: "assistant", content: reply });
        status.textContent = "done";
        out.parentElement.dataset.done = "1";
      } catch (e) {
        out.parentElement.classList.add("error");
        out.textContent = reply + " [" + e.message + "]";
        status.textContent = "failed";
      } finally {
        send.disabled = false;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    initCopy(document);
    initTypeHint();
    initChat();
  });
})();
