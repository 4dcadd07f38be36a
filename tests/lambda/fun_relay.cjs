// tests/lambda/fun_relay.cjs: smlt-worker as a `provided` Lambda function under npm
// @vercel/fun (a third party's Runtime API), behind a small HTTP relay for the C test
// (tests/integration/test_worker_fun.c). Usage:
//   node fun_relay.cjs --fun DIR/node_modules/@vercel/fun --code DIR --port-file F
// DIR (--code) holds `bootstrap` (smlt-worker). The relay listens on 127.0.0.1 port 0 and
// writes the port to F. POST /relay: the body is invoked as the event (RequestResponse) and the
// answer is the function's payload, or a "failed" response line for a function error; POST
// /invoke: the answer is fun's whole result as JSON ({StatusCode, FunctionError, Payload}).
'use strict';
const http = require('node:http');
const fs = require('node:fs');

function arg(name) {
  const i = process.argv.indexOf(name);
  if (i < 0 || i + 1 >= process.argv.length) {
    console.error(`fun_relay: ${name} is required`);
    process.exit(2);
  }
  return process.argv[i + 1];
}

async function main() {
  const { createFunction } = require(arg('--fun'));
  const fn = await createFunction({
    Code: { Directory: arg('--code') }, Handler: 'smlt', Runtime: 'provided',
    MemorySize: 1024, Timeout: 120,
  });
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const body = Buffer.concat(chunks).toString();
      try {
        const r = await fn.invoke({ InvocationType: 'RequestResponse', Payload: body });
        const payload = String(r.Payload);
        res.setHeader('Content-Type', 'application/json');
        if (req.url === '/invoke') {
          res.end(JSON.stringify({ StatusCode: r.StatusCode, FunctionError: r.FunctionError || null,
                                   Payload: payload }));
        } else if (r.FunctionError) {
          res.end(JSON.stringify({ status: 'failed', error: `function error: ${payload}` }));
        } else {
          res.end(payload);
        }
      } catch (e) {
        res.statusCode = 502;
        res.end(JSON.stringify({ error: String(e) }));
      }
    });
  });
  server.requestTimeout = 0;
  server.listen(0, '127.0.0.1', () => {
    const file = arg('--port-file');
    fs.writeFileSync(`${file}.tmp`, `${server.address().port}\n`);
    fs.renameSync(`${file}.tmp`, file);
  });
  const stop = async () => {
    server.close();
    await fn.destroy();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => {
  console.error('fun_relay:', e);
  process.exit(1);
});
