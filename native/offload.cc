#include "offload.h"

#include <cstring>

#include "byte_order.h"

namespace miniflannel {

namespace {

// From linux/virtio_net.h, which C++ cannot include (a field is named `class`).
constexpr uint8_t VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
constexpr uint8_t VIRTIO_NET_HDR_GSO_NONE = 0;
constexpr uint8_t VIRTIO_NET_HDR_GSO_TCPV4 = 1;
constexpr uint8_t VIRTIO_NET_HDR_GSO_ECN = 0x80;

constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kTcpFin = 0x01;
constexpr uint8_t kTcpPsh = 0x08;
constexpr uint8_t kTcpCwr = 0x80;


struct TcpLayout {
  size_t ip_header;
  size_t tcp_header;
};

bool TcpV4Layout(const uint8_t* packet, size_t length, TcpLayout* layout) {
  if (length < 20 || packet[0] >> 4 != 4) return false;
  size_t ihl = (packet[0] & 0x0f) * 4u;
  if (ihl < 20 || packet[9] != kProtoTcp || length < ihl + 20) return false;
  size_t thl = (packet[ihl + 12] >> 4) * 4u;
  if (thl < 20 || length < ihl + thl) return false;
  *layout = {ihl, thl};
  return true;
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
  if (type != VIRTIO_NET_HDR_GSO_TCPV4 || hdr.gso_size == 0 || !TcpV4Layout(packet, length, &layout)) return 0;
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
      Store16(out + field, ChecksumFold(ChecksumAdd(out + hdr.csum_start, length - hdr.csum_start, 0)));
    }
    lengths[0] = static_cast<uint32_t>(length);
    return 1;
  }

  size_t count = SegmentCount(hdr, packet, length);
  if (count == 0) return 0;
  TcpLayout layout;
  TcpV4Layout(packet, length, &layout);
  const size_t headers = layout.ip_header + layout.tcp_header;
  const size_t payload = length - headers;
  const size_t mss = hdr.gso_size;
  if (headers + mss > slot_size) return 0;

  const uint16_t first_id = Load16(packet + 4);
  const uint32_t first_seq = Load32(packet + layout.ip_header + 4);
  const uint8_t flags = packet[layout.ip_header + 13];
  // Pseudo-header: addresses and protocol are the same for every segment.
  const uint64_t pseudo = ChecksumAdd(packet + 12, 8, kProtoTcp);

  for (size_t i = 0; i < count; i++) {
    uint8_t* seg = out + i * slot_size;
    size_t chunk = payload == 0 ? 0 : (i + 1 < count ? mss : payload - i * mss);
    size_t seg_length = headers + chunk;
    memcpy(seg, packet, headers);
    memcpy(seg + headers, packet + headers + i * mss, chunk);

    Store16(seg + 2, static_cast<uint16_t>(seg_length));
    Store16(seg + 4, static_cast<uint16_t>(first_id + i));
    Store16(seg + 10, 0);
    Store16(seg + 10, ChecksumFold(ChecksumAdd(seg, layout.ip_header, 0)));

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

bool IsPlainTcp4(const uint8_t* p, size_t length, TcpLayout* layout) {
  // No IP options and no fragments, which the kernel would not join either.
  if (!TcpV4Layout(p, length, layout) || layout->ip_header != 20) return false;
  if ((Load16(p + 6) & 0x3fff) != 0) return false;
  return Load16(p + 2) == length;
}

bool SameFlowHeaders(const uint8_t* a, const uint8_t* b, const TcpLayout& layout) {
  // IP: version/ihl, tos, flags, ttl, protocol, addresses; not length, id or checksum.
  if (a[0] != b[0] || a[1] != b[1] || a[6] != b[6] || a[8] != b[8] || a[9] != b[9]) return false;
  if (memcmp(a + 12, b + 12, 8) != 0) return false;
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
  TcpRun run{1, 0, 0, lengths[start]};
  if (!IsPlainTcp4(first, lengths[start], &layout)) return run;
  uint8_t flags = first[layout.ip_header + 13];
  run.headers = layout.ip_header + layout.tcp_header;
  run.mss = lengths[start] - run.headers;
  if (flags != kTcpAck || run.mss == 0) return run;

  uint32_t next_seq = Load32(first + layout.ip_header + 4) + static_cast<uint32_t>(run.mss);
  for (size_t i = start + 1; i < count && run.packets < kMaxRunSegments; i++) {
    const uint8_t* p = base + offsets[i];
    TcpLayout other;
    if (!IsPlainTcp4(p, lengths[i], &other) || other.tcp_header != layout.tcp_header) break;
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
  const size_t ip_header = 20;
  Store16(first + 2, static_cast<uint16_t>(run.total));
  Store16(first + 10, 0);
  Store16(first + 10, ChecksumFold(ChecksumAdd(first, ip_header, 0)));
  uint8_t* tcp = first + ip_header;
  if (push) tcp[13] |= kTcpPsh;
  // NEEDS_CSUM: the field carries the pseudo-header sum, uncomplemented; the
  // kernel completes each segment's checksum if it ever cuts the packet again.
  size_t tcp_length = run.total - ip_header;
  uint16_t pseudo = static_cast<uint16_t>(~ChecksumFold(ChecksumAdd(first + 12, 8, kProtoTcp + tcp_length)));
  Store16(tcp + 16, pseudo);

  uint16_t hdr_len = static_cast<uint16_t>(run.headers);
  uint16_t gso_size = static_cast<uint16_t>(run.mss);
  uint16_t csum_start = static_cast<uint16_t>(ip_header);
  uint16_t csum_offset = 16;
  vnet[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  vnet[1] = VIRTIO_NET_HDR_GSO_TCPV4;
  memcpy(vnet + 2, &hdr_len, 2);
  memcpy(vnet + 4, &gso_size, 2);
  memcpy(vnet + 6, &csum_start, 2);
  memcpy(vnet + 8, &csum_offset, 2);
}

}  // namespace miniflannel
