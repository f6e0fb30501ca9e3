// Just enough DER to show a certificate's subject, issuer and validity (RFC 5280 §4.1); anything unexpected gives
// null and the page shows the PEM text alone.

const NAMES = { "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU" };

function node(bytes, pos) {
  const tag = bytes[pos];
  let len = bytes[pos + 1];
  let start = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n < 1 || n > 4) throw new Error("bad length");
    len = 0;
    for (let i = 0; i < n; i += 1) len = len * 256 + bytes[start + i];
    start += n;
  }
  if (start + len > bytes.length) throw new Error("truncated");
  return { tag, start, end: start + len };
}

function children(bytes, parent) {
  const out = [];
  for (let pos = parent.start; pos < parent.end; ) {
    const child = node(bytes, pos);
    out.push(child);
    pos = child.end;
  }
  return out;
}

function oid(bytes, n) {
  const parts = [];
  let value = 0;
  for (let i = n.start; i < n.end; i += 1) {
    value = value * 128 + (bytes[i] & 0x7f);
    if (!(bytes[i] & 0x80)) {
      if (parts.length) parts.push(value);
      else {
        const first = Math.min(2, Math.floor(value / 40)); // the first two arcs share one number
        parts.push(first, value - 40 * first);
      }
      value = 0;
    }
  }
  return parts.join(".");
}

function text(bytes, n) {
  return new TextDecoder().decode(bytes.subarray(n.start, n.end));
}

function name(bytes, n) {
  const parts = [];
  for (const rdn of children(bytes, n)) {
    for (const atv of children(bytes, rdn)) {
      const [type, value] = children(bytes, atv);
      const key = NAMES[oid(bytes, type)];
      if (key) parts.push(`${key}=${text(bytes, value)}`);
    }
  }
  return parts.join(", ");
}

function time(bytes, n) {
  const s = text(bytes, n);
  const full = n.tag === 0x17 ? `${Number(s.slice(0, 2)) < 50 ? "20" : "19"}${s}` : s; // UTCTime: two-digit year
  const m = full.match(/^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/);
  return m ? new Date(Date.UTC(m[1], m[2] - 1, m[3], m[4], m[5], m[6])) : null;
}

// {subject, issuer, notBefore, notAfter} of the first certificate in a PEM text, or null.
export function describe(pem) {
  try {
    const b64 = pem.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0];
    const bytes = Uint8Array.from(atob(b64.replace(/\s+/g, "")), (c) => c.charCodeAt(0));
    const [tbs] = children(bytes, node(bytes, 0));
    const fields = children(bytes, tbs);
    const at = fields[0].tag === 0xa0 ? 1 : 0; // [0] version is optional
    const [notBefore, notAfter] = children(bytes, fields[at + 3]).map((t) => time(bytes, t));
    return { issuer: name(bytes, fields[at + 2]), subject: name(bytes, fields[at + 4]), notBefore, notAfter };
  } catch {
    return null;
  }
}
