// Slipway's Node example: a node:http server on $PORT whose one dependency,
// ms, comes from the npm registry (npm ci in the build).
const http = require("node:http");
const ms = require("ms");

const port = Number(process.env.PORT || 3000);
const deployment = process.env.SLIPWAY_DEPLOYMENT_ID || "(none)";
const started = Date.now();

http
  .createServer((req, res) => {
    res.writeHead(200, { "Content-Type": "text/plain; charset=utf-8" });
    res.end(`hello from node ${process.version}, deployment ${deployment}, up ${ms(Date.now() - started)}\n`);
    console.log(`${req.method} ${req.url}`);
  })
  .listen(port, () => console.log(`listening on :${port}`));
