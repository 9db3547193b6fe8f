// A minimal SMTP sink for .ci/interop.sh: production mode requires SMTP_HOST, and the
// interop suites read no email, so this accepts every message and throws it away.
// Listens on 127.0.0.1 at a free port and prints the port on its first line of output.
// Plain SMTP (RFC 5321) only: no STARTTLS, no AUTH; the service is started with SMTP_TLS=none
// to this loopback host, which production mode allows.
import { createServer } from 'node:net';

let messages = 0;
const server = createServer((socket) => {
  socket.setEncoding('utf8');
  let buffer = '';
  let inData = false;
  const reply = (line) => socket.write(`${line}\r\n`);
  reply('220 interop-sink ESMTP');
  socket.on('data', (chunk) => {
    buffer += chunk;
    for (;;) {
      if (inData) {
        const end = buffer.indexOf('\r\n.\r\n');
        if (end < 0) {
          // keep the tail, in case the terminator is split across chunks
          if (buffer.length > 8) buffer = buffer.slice(-8);
          return;
        }
        buffer = buffer.slice(end + 5);
        inData = false;
        messages += 1;
        reply('250 2.0.0 queued');
        continue;
      }
      const eol = buffer.indexOf('\r\n');
      if (eol < 0) return;
      const line = buffer.slice(0, eol);
      buffer = buffer.slice(eol + 2);
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === 'EHLO') {
        reply('250-interop-sink');
        reply('250-8BITMIME');
        reply('250 SMTPUTF8');
      } else if (verb === 'DATA') {
        inData = true;
        reply('354 end with <CRLF>.<CRLF>');
      } else if (verb === 'QUIT') {
        reply('221 2.0.0 bye');
        socket.end();
        return;
      } else {
        reply('250 2.0.0 ok');
      }
    }
  });
  socket.on('error', () => {});
});

server.listen(0, '127.0.0.1', () => {
  console.log(server.address().port);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    console.log(`interop-sink: ${messages} message(s) received`);
    process.exit(0);
  });
}
