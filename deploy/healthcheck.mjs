// The image's HEALTHCHECK (for `docker run`; Kubernetes uses the DaemonSet's
// probes): GET /healthz where the daemon serves it, read from the same
// MINIFLANNELD_* variables and with the same defaults as daemon/flags.ts.
const ip = process.env.MINIFLANNELD_HEALTHZ_IP;
// A wildcard is reached on loopback of its family; an IPv6 address goes in brackets.
const host = !ip || ip === '0.0.0.0' ? '127.0.0.1' : ip === '::' ? '[::1]' : ip.includes(':') ? `[${ip}]` : ip;
const port = process.env.MINIFLANNELD_HEALTHZ_PORT || '8286';
const url = `http://${host}:${port}/healthz`;
try {
  const response = await fetch(url, { signal: AbortSignal.timeout(3000) });
  if (!response.ok) console.error(`${url} answered ${response.status}`);
  process.exit(response.ok ? 0 : 1);
} catch (err) {
  console.error(`miniflanneld does not answer at ${url}: ${err.cause?.code ?? err.message}`);
  process.exit(1);
}
