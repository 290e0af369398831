#include "offload.h"

#include <cstring>

#include "byte_order.h"

namespace miniflannel {

namespace {

// From linux/virtio_net.h, which C++ cannot include (a field is named `class`).
constexpr uint8_t VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
constexpr uint8_t VIRTIO_NET_HDR_GSO_NONE = 0;
constexpr uint8_t VIRTIO_NET_HDR_GSO_TCPV4 = 1;
constexpr uint8_t VIRTIO_NET_HDR_GSO_TCPV6 = 4;
constexpr uint8_t VIRTIO_NET_HDR_GSO_ECN = 0x80;

constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kTcpFin = 0x01;
constexpr uint8_t kTcpPsh = 0x08;
constexpr uint8_t kTcpCwr = 0x80;
// A checksum that folds to zero is sent as all ones (RFC 768 for UDP, and
// required over IPv6, where a zero UDP checksum means none and is dropped).
constexpr uint16_t kChecksumMangledZero = 0xffff;

struct TcpLayout {
  size_t ip_header;
  size_t tcp_header;
  bool ipv6;
};

bool TcpHeaderAt(const uint8_t* packet, size_t length, size_t ip_header, bool ipv6, TcpLayout* layout) {
  if (length < ip_header + 20) return false;
  size_t thl = (packet[ip_header + 12] >> 4) * 4u;
  if (thl < 20 || length < ip_header + thl) return false;
  *layout = {ip_header, thl, ipv6};
  return true;
}

bool TcpV4Layout(const uint8_t* packet, size_t length, TcpLayout* layout) {
  if (length < 20 || packet[0] >> 4 != 4) return false;
  size_t ihl = (packet[0] & 0x0f) * 4u;
  if (ihl < 20 || packet[9] != kProtoTcp) return false;
  return TcpHeaderAt(packet, length, ihl, false, layout);
}

// TCP directly after the fixed IPv6 header. The kernel's own TCP can put
// extension headers in between (a socket with IPV6_HOPOPTS, IPV6_RTHDR or
// IPV6_DSTOPTS) and still hand the TUN a TCPv6 GSO frame, as it would to a
// NIC; such frames are refused like malformed ones rather than cut by a
// header-chain walk no ordinary pod traffic needs.
bool TcpV6Layout(const uint8_t* packet, size_t length, TcpLayout* layout) {
  if (length < kIPv6HeaderLen || packet[0] >> 4 != 6 || packet[6] != kProtoTcp) return false;
  return TcpHeaderAt(packet, length, kIPv6HeaderLen, true, layout);
}

// The layout of the TCP super-packet a GSO type announces; false for any other GSO type.
bool GsoTcpLayout(uint8_t type, const uint8_t* packet, size_t length, TcpLayout* layout) {
  if (type == VIRTIO_NET_HDR_GSO_TCPV4) return TcpV4Layout(packet, length, layout);
  if (type == VIRTIO_NET_HDR_GSO_TCPV6) return TcpV6Layout(packet, length, layout);
  return false;
}

// The pseudo-header's addresses and protocol, the same for every segment of a flow.
uint64_t PseudoHeaderAddresses(const uint8_t* packet, bool ipv6) {
  return ipv6 ? ChecksumAdd(packet + 8, 32, kProtoTcp) : ChecksumAdd(packet + 12, 8, kProtoTcp);
}

}  // namespace

VirtioNetHdr ParseVirtioNetHdr(const uint8_t* p) {
  // The TUN device speaks virtio in host byte order (little-endian here).
  VirtioNetHdr hdr;
  hdr.flags = p[0];
  hdr.gso_type = p[1];
  memcpy(&hdr.hdr_len, p + 2, 2);
  memcpy(&hdr.gso_size, p + 4, 2);
  memcpy(&hdr.csum_start, p + 6, 2);
  memcpy(&hdr.csum_offset, p + 8, 2);
  return hdr;
}

// The ones' complement sum does not depend on byte order (RFC 1071), so the
// data is summed in native order and only the folded 16 bits are swapped to
// network order. Four accumulators of 32-bit words keep the adds
// independent, so they overlap: this loop was a quarter of the sending
// daemon's time when it cuts TCP super-packets (docs/benchmarks.md), with
// one accumulator of byte-swapped words. No carry is lost: each
// accumulator would need 2^32 words (16 GiB) to overflow.
uint64_t ChecksumAdd(const uint8_t* data, size_t length, uint64_t sum) {
  uint64_t a = 0, b = 0, c = 0, d = 0;
  for (; length >= 16; data += 16, length -= 16) {
    uint32_t words[4];
    memcpy(words, data, sizeof(words));
    a += words[0];
    b += words[1];
    c += words[2];
    d += words[3];
  }
  uint64_t native = a + b + c + d;
  for (; length >= 4; data += 4, length -= 4) {
    uint32_t word;
    memcpy(&word, data, sizeof(word));
    native += word;
  }
  if (length >= 2) {
    uint16_t half;
    memcpy(&half, data, sizeof(half));
    native += half;
    data += 2;
    length -= 2;
  }
  // An odd last byte is the high byte of a network-order word: the low byte of a native one.
  if (length) native += data[0];
  while (native >> 16) native = (native & 0xffff) + (native >> 16);
  const uint16_t folded = static_cast<uint16_t>(native);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  return sum + static_cast<uint16_t>(folded << 8 | folded >> 8);
#else
  return sum + folded;
#endif
}

uint16_t ChecksumFold(uint64_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

size_t SegmentCount(const VirtioNetHdr& hdr, const uint8_t* packet, size_t length) {
  uint8_t type = hdr.gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
  if (type == VIRTIO_NET_HDR_GSO_NONE) return 1;
  TcpLayout layout;
  if (hdr.gso_size == 0 || !GsoTcpLayout(type, packet, length, &layout)) return 0;
  size_t payload = length - layout.ip_header - layout.tcp_header;
  return payload == 0 ? 1 : (payload + hdr.gso_size - 1) / hdr.gso_size;
}

size_t Segment(const VirtioNetHdr& hdr, const uint8_t* packet, size_t length, uint8_t* out, size_t slot_size,
               uint32_t* lengths) {
  uint8_t type = hdr.gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
  if (type == VIRTIO_NET_HDR_GSO_NONE) {
    if (length > slot_size) return 0;
    memcpy(out, packet, length);
    if (hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
      size_t field = static_cast<size_t>(hdr.csum_start) + hdr.csum_offset;
      if (hdr.csum_start >= length || field + 2 > length) return 0;
      // The field holds the pseudo-header sum already; summing over it completes the checksum.
      uint16_t checksum = ChecksumFold(ChecksumAdd(out + hdr.csum_start, length - hdr.csum_start, 0));
      Store16(out + field, checksum == 0 ? kChecksumMangledZero : checksum);
    }
    lengths[0] = static_cast<uint32_t>(length);
    return 1;
  }

  size_t count = SegmentCount(hdr, packet, length);
  if (count == 0) return 0;
  TcpLayout layout;
  GsoTcpLayout(hdr.gso_type & ~VIRTIO_NET_HDR_GSO_ECN, packet, length, &layout);
  const size_t headers = layout.ip_header + layout.tcp_header;
  const size_t payload = length - headers;
  const size_t mss = hdr.gso_size;
  if (headers + mss > slot_size) return 0;

  const uint16_t first_id = Load16(packet + 4);
  const uint32_t first_seq = Load32(packet + layout.ip_header + 4);
  const uint8_t flags = packet[layout.ip_header + 13];
  const uint64_t pseudo = PseudoHeaderAddresses(packet, layout.ipv6);

  for (size_t i = 0; i < count; i++) {
    uint8_t* seg = out + i * slot_size;
    size_t chunk = payload == 0 ? 0 : (i + 1 < count ? mss : payload - i * mss);
    size_t seg_length = headers + chunk;
    memcpy(seg, packet, headers);
    memcpy(seg + headers, packet + headers + i * mss, chunk);

    if (layout.ipv6) {
      // The payload length; IPv6 has no header checksum and no id but in a fragment header.
      Store16(seg + 4, static_cast<uint16_t>(seg_length - kIPv6HeaderLen));
    } else {
      Store16(seg + 2, static_cast<uint16_t>(seg_length));
      Store16(seg + 4, static_cast<uint16_t>(first_id + i));
      Store16(seg + 10, 0);
      Store16(seg + 10, ChecksumFold(ChecksumAdd(seg, layout.ip_header, 0)));
    }

    uint8_t* tcp = seg + layout.ip_header;
    Store32(tcp + 4, first_seq + static_cast<uint32_t>(i * mss));
    uint8_t seg_flags = flags;
    if (i + 1 < count) seg_flags &= static_cast<uint8_t>(~(kTcpFin | kTcpPsh));
    if (i > 0) seg_flags &= static_cast<uint8_t>(~kTcpCwr);
    tcp[13] = seg_flags;
    Store16(tcp + 16, 0);
    size_t tcp_length = seg_length - layout.ip_header;
    Store16(tcp + 16, ChecksumFold(ChecksumAdd(tcp, tcp_length, pseudo + tcp_length)));
    lengths[i] = static_cast<uint32_t>(seg_length);
  }
  return count;
}

namespace {

constexpr uint8_t kTcpAck = 0x10;
constexpr size_t kMaxRunBytes = 65535;

// A TCP packet the kernel's GRO would consider joining: no IPv4 options or
// fragments, no IPv6 extension headers, and an IP length that is the packet's.
bool IsPlainTcp(const uint8_t* p, size_t length, TcpLayout* layout) {
  if (length > 0 && p[0] >> 4 == 6) {
    return TcpV6Layout(p, length, layout) && Load16(p + 4) + kIPv6HeaderLen == length;
  }
  if (!TcpV4Layout(p, length, layout) || layout->ip_header != 20) return false;
  if ((Load16(p + 6) & 0x3fff) != 0) return false;
  return Load16(p + 2) == length;
}

bool SameFlowHeaders(const uint8_t* a, const uint8_t* b, const TcpLayout& layout) {
  if (layout.ipv6) {
    // Version, traffic class, flow label, next header, hop limit, addresses; not the payload length.
    if (memcmp(a, b, 4) != 0 || a[6] != b[6] || a[7] != b[7] || memcmp(a + 8, b + 8, 32) != 0) return false;
  } else {
    // Version/ihl, tos, flags, ttl, protocol, addresses; not length, id or checksum.
    if (a[0] != b[0] || a[1] != b[1] || a[6] != b[6] || a[8] != b[8] || a[9] != b[9]) return false;
    if (memcmp(a + 12, b + 12, 8) != 0) return false;
  }
  const uint8_t* ta = a + layout.ip_header;
  const uint8_t* tb = b + layout.ip_header;
  // TCP: ports, ack, data offset, window and every option byte; not seq, flags or checksum.
  if (memcmp(ta, tb, 4) != 0 || memcmp(ta + 8, tb + 8, 5) != 0 || memcmp(ta + 14, tb + 14, 2) != 0) return false;
  return memcmp(ta + 20, tb + 20, layout.tcp_header - 20) == 0;
}

}  // namespace

TcpRun FindTcpRun(const uint8_t* base, const uint32_t* offsets, const uint32_t* lengths, size_t start, size_t count) {
  const uint8_t* first = base + offsets[start];
  TcpLayout layout;
  TcpRun run{1, 0, 0, 0, lengths[start]};
  if (!IsPlainTcp(first, lengths[start], &layout)) return run;
  uint8_t flags = first[layout.ip_header + 13];
  run.ip_header = layout.ip_header;
  run.headers = layout.ip_header + layout.tcp_header;
  run.mss = lengths[start] - run.headers;
  if (flags != kTcpAck || run.mss == 0) return run;

  uint32_t next_seq = Load32(first + layout.ip_header + 4) + static_cast<uint32_t>(run.mss);
  for (size_t i = start + 1; i < count && run.packets < kMaxRunSegments; i++) {
    const uint8_t* p = base + offsets[i];
    TcpLayout other;
    if (!IsPlainTcp(p, lengths[i], &other) || other.ipv6 != layout.ipv6 || other.tcp_header != layout.tcp_header) break;
    if (!SameFlowHeaders(first, p, layout) || Load32(p + layout.ip_header + 4) != next_seq) break;
    uint8_t other_flags = p[layout.ip_header + 13];
    size_t payload = lengths[i] - run.headers;
    if ((other_flags & ~kTcpPsh) != kTcpAck || payload == 0 || payload > run.mss) break;
    if (run.total + payload > kMaxRunBytes) break;
    run.packets++;
    run.total += payload;
    next_seq += static_cast<uint32_t>(payload);
    // A short segment or a push ends the run, as it ends a kernel GRO batch.
    if (payload < run.mss || (other_flags & kTcpPsh)) break;
  }
  return run;
}

void PrepareTcpRun(uint8_t* first, const TcpRun& run, bool push, uint8_t* vnet) {
  const size_t ip_header = run.ip_header;
  const bool ipv6 = ip_header == kIPv6HeaderLen;
  if (ipv6) {
    Store16(first + 4, static_cast<uint16_t>(run.total - ip_header));
  } else {
    Store16(first + 2, static_cast<uint16_t>(run.total));
    Store16(first + 10, 0);
    Store16(first + 10, ChecksumFold(ChecksumAdd(first, ip_header, 0)));
  }
  uint8_t* tcp = first + ip_header;
  if (push) tcp[13] |= kTcpPsh;
  // NEEDS_CSUM: the field carries the pseudo-header sum, uncomplemented; the
  // kernel completes each segment's checksum if it ever cuts the packet again.
  size_t tcp_length = run.total - ip_header;
  uint16_t pseudo = static_cast<uint16_t>(~ChecksumFold(PseudoHeaderAddresses(first, ipv6) + tcp_length));
  Store16(tcp + 16, pseudo);

  uint16_t hdr_len = static_cast<uint16_t>(run.headers);
  uint16_t gso_size = static_cast<uint16_t>(run.mss);
  uint16_t csum_start = static_cast<uint16_t>(ip_header);
  uint16_t csum_offset = 16;
  vnet[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  vnet[1] = ipv6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4;
  memcpy(vnet + 2, &hdr_len, 2);
  memcpy(vnet + 4, &gso_size, 2);
  memcpy(vnet + 6, &csum_start, 2);
  memcpy(vnet + 8, &csum_offset, 2);
}

}  // namespace miniflannel
