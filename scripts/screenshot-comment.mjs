// Part of scripts/screenshot: a pull-request comment's Markdown made into a page that looks
// as GitHub shows the comment on a pull request's timeline. GitHub's Markdown is GFM
// (marked), its look github-markdown-css in a comment box, and a ```mermaid block is drawn
// by Mermaid in the page, as GitHub draws it. When the chart is drawn, the page writes
// its height into <body data-height>, for the script to size the screenshot.
//
// Usage: node scripts/screenshot-comment.mjs NODE_MODULES BODY.md OUT.html

import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [modules, input, output] = process.argv.slice(2);
if (!output) {
  console.error("usage: screenshot-comment.mjs NODE_MODULES BODY.md OUT.html");
  process.exit(2);
}
const require = createRequire(join(modules, "noop.js"));
const { marked } = require("marked");
const css = readFileSync(join(modules, "github-markdown-css/github-markdown-light.css"), "utf8");
const mermaid = pathToFileURL(join(modules, "mermaid/dist/mermaid.min.js")).href;

const escape = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
marked.use({
  gfm: true,
  renderer: {
    // GitHub replaces a mermaid block by its drawing; other blocks stay code.
    code({ text, lang }) {
      return lang === "mermaid" ? `<pre class="mermaid">${escape(text)}</pre>\n` : false;
    },
  },
});
const body = marked.parse(readFileSync(input, "utf8"));

// The timeline's comment: avatar, a box with a grey header, the body at 14 px.
const page = `<!doctype html>
<html><head><meta charset="utf-8"><title>pushwake commented</title>
<style>
${css}
html, body { margin: 0; background: #fff; }
.timeline { display: flex; gap: 16px; padding: 16px; box-sizing: border-box; width: 900px;
  font-family: -apple-system, BlinkMacSystemFont, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif; }
.avatar { flex: none; width: 40px; height: 40px; border-radius: 50%; background: #1f6feb;
  color: #fff; font-size: 20px; font-weight: 600; line-height: 40px; text-align: center; }
.comment { flex: 1; min-width: 0; border: 1px solid #d1d9e0; border-radius: 6px; }
.header { display: flex; align-items: center; gap: 4px; padding: 8px 16px; font-size: 14px;
  color: #59636e; background: #f6f8fa; border-bottom: 1px solid #d1d9e0;
  border-radius: 6px 6px 0 0; }
.header b { color: #1f2328; font-weight: 600; }
.header .bot { border: 1px solid #d1d9e0; border-radius: 2em; padding: 0 7px; font-size: 12px;
  font-weight: 500; line-height: 18px; }
.header .edited { margin-left: auto; }
.markdown-body { padding: 16px; font-size: 14px; }
.markdown-body pre.mermaid { background: none; padding: 0; margin: 0; text-align: center; }
</style></head>
<body>
<div class="timeline">
  <div class="avatar">p</div>
  <div class="comment">
    <div class="header"><b>pushwake</b><span class="bot">bot</span> commented
      <span class="edited">edited</span></div>
    <div class="markdown-body">
${body}
    </div>
  </div>
</div>
<script src="${mermaid}"></script>
<script>
  mermaid.initialize({ startOnLoad: false, theme: "default" });
  mermaid.run({ querySelector: "pre.mermaid" }).then(() => {
    document.body.dataset.height = Math.ceil(document.querySelector(".timeline").getBoundingClientRect().height);
  });
</script>
</body></html>
`;
writeFileSync(output, page);
