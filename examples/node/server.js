// Slipway's Node example: a node:http server on $PORT, no dependencies.
const http = require("node:http");

const port = Number(process.env.PORT || 3000);
const deployment = process.env.SLIPWAY_DEPLOYMENT_ID || "(none)";

http
  .createServer((req, res) => {
    res.writeHead(200, { "Content-Type": "text/plain; charset=utf-8" });
    res.end(`hello from node, deployment ${deployment}\n`);
    console.log(`${req.method} ${req.url}`);
  })
  .listen(port, () => console.log(`listening on :${port}`));
