// A small authoritative DNS server on loopback (UDP and TCP on one port) answering TXT, MX, A,
// AAAA and CNAME (when asked for a CNAME: none is followed) from a table the test edits, so that
// the operator's DNS check and the sender's direct delivery (MX, addresses, MTA-STS) run against
// real lookups.
//
//   const dns = await startDnsServer();
//   dns.records.set('_dmarc.example.com', [{ type: 'TXT', value: 'v=DMARC1; p=none' }]);
//   // MAILPLANE_DNS_SERVERS=dns.address

import { createSocket } from 'node:dgram';
import { createServer, type AddressInfo, type Server } from 'node:net';

export type DnsAnswer =
  | { type: 'TXT'; value: string }
  | { type: 'MX'; priority: number; exchange: string }
  | { type: 'A'; address: string }
  | { type: 'AAAA'; address: string }
  | { type: 'CNAME'; target: string };

export interface DnsServer {
  /** host:port, as MAILPLANE_DNS_SERVERS takes it. */
  address: string;
  /** Records by lower-case name; a name absent here is NXDOMAIN. */
  records: Map<string, DnsAnswer[]>;
  close(): Promise<void>;
}

const TYPE = { TXT: 16, MX: 15, A: 1, AAAA: 28, CNAME: 5 } as const;

function encodeName(name: string): Buffer {
  const labels = name.replace(/\.$/, '').split('.').filter(Boolean);
  return Buffer.concat([
    ...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])),
    Buffer.from([0]),
  ]);
}

function rdata(answer: DnsAnswer): Buffer {
  if (answer.type === 'A') return Buffer.from(answer.address.split('.').map(Number));
  if (answer.type === 'AAAA') return ipv6Bytes(answer.address);
  if (answer.type === 'CNAME') return encodeName(answer.target);
  if (answer.type === 'MX') {
    const pref = Buffer.alloc(2);
    pref.writeUInt16BE(answer.priority);
    return Buffer.concat([pref, encodeName(answer.exchange)]);
  }
  // A TXT value longer than 255 bytes is published as several strings, as a zone file splits it.
  const bytes = Buffer.from(answer.value);
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length || i === 0; i += 255) {
    const part = bytes.subarray(i, i + 255);
    chunks.push(Buffer.from([part.length]), part);
  }
  return Buffer.concat(chunks);
}

/** The 16 bytes of an IPv6 address in any of its spellings (`::1`, `2001:db8::25`). */
function ipv6Bytes(address: string): Buffer {
  const [head = '', tail] = address.split('::');
  const groups = (part: string) => (part ? part.split(':') : []);
  const missing = 8 - groups(head).length - groups(tail ?? '').length;
  const all = [
    ...groups(head),
    ...(tail === undefined ? [] : Array<string>(missing).fill('0')),
    ...groups(tail ?? ''),
  ];
  const bytes = Buffer.alloc(16);
  all.forEach((group, i) => bytes.writeUInt16BE(parseInt(group, 16), i * 2));
  return bytes;
}

/** Answers one query message; undefined for a message that is not a query we can read. */
function answer(query: Buffer, records: Map<string, DnsAnswer[]>): Buffer | undefined {
  if (query.length < 12 || query.readUInt16BE(4) !== 1) return undefined;
  let offset = 12;
  const labels: string[] = [];
  while (offset < query.length && query[offset] !== 0) {
    const len = query[offset]!;
    labels.push(query.subarray(offset + 1, offset + 1 + len).toString());
    offset += len + 1;
  }
  const questionEnd = offset + 5;
  if (questionEnd > query.length) return undefined;
  const qtype = query.readUInt16BE(offset + 1);
  const name = labels.join('.').toLowerCase();
  const known = records.get(name);
  const matches = (known ?? []).filter((a) => TYPE[a.type] === qtype);

  const header = Buffer.alloc(12);
  query.copy(header, 0, 0, 2);
  const rd = query.readUInt16BE(2) & 0x0100;
  // QR + AA + the client's RD; RCODE 3 (NXDOMAIN) for a name we do not know at all.
  header.writeUInt16BE(0x8400 | rd | (known ? 0 : 3), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(matches.length, 6);
  const answers = matches.map((a) => {
    const data = rdata(a);
    const fixed = Buffer.alloc(12);
    fixed.writeUInt16BE(0xc00c, 0); // pointer to the question's name
    fixed.writeUInt16BE(TYPE[a.type], 2);
    fixed.writeUInt16BE(1, 4); // IN
    fixed.writeUInt32BE(5, 6); // TTL: short, a test changes records as it goes
    fixed.writeUInt16BE(data.length, 10);
    return Buffer.concat([fixed, data]);
  });
  return Buffer.concat([header, query.subarray(12, questionEnd), ...answers]);
}

export async function startDnsServer(): Promise<DnsServer> {
  const records = new Map<string, DnsAnswer[]>();
  // UDP and TCP on one port (a resolver retries a truncated answer over TCP). A port free for one
  // may be taken for the other, e.g. by an outgoing connection's local port: then try another.
  for (let attempt = 1; ; attempt++) {
    const tcp = tcpServer(records);
    await new Promise<void>((resolve, reject) => tcp.listen(0, '127.0.0.1', resolve).once('error', reject));
    const port = (tcp.address() as AddressInfo).port;
    const udp = createSocket('udp4');
    udp.on('message', (msg, rinfo) => {
      const reply = answer(msg, records);
      if (reply) udp.send(reply, rinfo.port, rinfo.address);
    });
    try {
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind(port, '127.0.0.1', () => {
          udp.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      udp.close();
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
      if (attempt === 5 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      continue;
    }
    return {
      address: `127.0.0.1:${port}`,
      records,
      close: async () => {
        udp.close();
        await new Promise<void>((resolve) => tcp.close(() => resolve()));
      },
    };
  }
}

function tcpServer(records: Map<string, DnsAnswer[]>): Server {
  return createServer((socket) => {
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        const len = buffered.readUInt16BE(0);
        const reply = answer(buffered.subarray(2, 2 + len), records);
        buffered = buffered.subarray(2 + len);
        if (!reply) continue;
        const prefix = Buffer.alloc(2);
        prefix.writeUInt16BE(reply.length);
        socket.write(Buffer.concat([prefix, reply]));
      }
    });
    socket.on('error', () => {});
  });
}
