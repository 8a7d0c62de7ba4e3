// The web dashboard's script: local times, refreshing pages that show live state, and
// following a job's log. No framework, no build step.
"use strict";

function localTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const when = new Date(el.getAttribute("datetime"));
    if (!isNaN(when)) { el.textContent = when.toLocaleString(); el.title = el.getAttribute("datetime"); }
  }
}

function refreshEvery(seconds) {
  // Reload while the tab is visible and nobody is using a form on it.
  setInterval(() => {
    if (document.visibilityState !== "visible") return;
    if (document.activeElement && ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName)) return;
    location.reload();
  }, seconds * 1000);
}

async function followLogs(pre) {
  const job = pre.dataset.job;
  let after = 0;
  for (;;) {
    let reply;
    try {
      reply = await fetch(`/ui/jobs/${encodeURIComponent(job)}/logs?after=${after}`, { credentials: "same-origin" });
    } catch (e) {
      await new Promise(r => setTimeout(r, 5000));
      continue;
    }
    if (reply.status === 401) { location.href = "/ui/login?why=expired"; return; }
    if (!reply.ok) { pre.append(`\n[logs unavailable: ${reply.status}]`); return; }
    const page = await reply.json();
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    for (const line of page.lines) pre.append(line.text.endsWith("\n") ? line.text : line.text + "\n");
    if (atBottom) pre.scrollTop = pre.scrollHeight;
    after = page.next;
    if (page.finished && page.lines.length === 0) {
      if (pre.textContent === "") pre.textContent = "(no output)";
      return;
    }
    if (page.lines.length === 0) await new Promise(r => setTimeout(r, 2000));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  const refresh = document.querySelector("[data-refresh]");
  if (refresh) refreshEvery(Number(refresh.dataset.refresh) || 15);
  const logs = document.querySelector("pre#logs[data-job]");
  if (logs) followLogs(logs);
});
