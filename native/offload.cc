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
constexpr uint8_t VIRTIO_NET_HDR_GSO_UDP_L4 = 5;
constexpr uint8_t VIRTIO_NET_HDR_GSO_ECN = 0x80;

constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;
constexpr size_t kTcpChecksumOffset = 16;
constexpr size_t kUdpHeaderLen = 8;
constexpr size_t kUdpChecksumOffset = 6;
constexpr uint8_t kTcpFin = 0x01;
constexpr uint8_t kTcpPsh = 0x08;
constexpr uint8_t kTcpCwr = 0x80;
// A checksum that folds to zero is sent as all ones (RFC 768 for UDP, and
// required over IPv6, where a zero UDP checksum means none and is dropped).
constexpr uint16_t kChecksumMangledZero = 0xffff;

// Where the TCP or UDP header of a packet lies.
struct L4Layout {
  size_t ip_header;
  size_t l4_header;  // the TCP header with its options, or the UDP header
  bool ipv6;
  uint8_t protocol;
};

size_t ChecksumOffset(uint8_t protocol) { return protocol == kProtoTcp ? kTcpChecksumOffset : kUdpChecksumOffset; }

bool L4HeaderAt(const uint8_t* packet, size_t length, size_t ip_header, bool ipv6, uint8_t protocol,
                L4Layout* layout) {
  size_t l4_header = kUdpHeaderLen;
  if (protocol == kProtoTcp) {
    if (length < ip_header + 20) return false;
    l4_header = (packet[ip_header + 12] >> 4) * 4u;
    if (l4_header < 20) return false;
  }
  if (length < ip_header + l4_header) return false;
  *layout = {ip_header, l4_header, ipv6, protocol};
  return true;
}

bool V4Layout(const uint8_t* packet, size_t length, uint8_t protocol, L4Layout* layout) {
  if (length < 20 || packet[0] >> 4 != 4) return false;
  size_t ihl = (packet[0] & 0x0f) * 4u;
  if (ihl < 20 || packet[9] != protocol) return false;
  return L4HeaderAt(packet, length, ihl, false, protocol, layout);
}

// TCP or UDP directly after the fixed IPv6 header. The kernel's own stack
// can put extension headers in between (a socket with IPV6_HOPOPTS,
// IPV6_RTHDR or IPV6_DSTOPTS) and still hand the TUN a GSO frame, as it
// would to a NIC; such frames are refused like malformed ones rather than
// cut by a header-chain walk no ordinary pod traffic needs.
bool V6Layout(const uint8_t* packet, size_t length, uint8_t protocol, L4Layout* layout) {
  if (length < kIPv6HeaderLen || packet[0] >> 4 != 6 || packet[6] != protocol) return false;
  return L4HeaderAt(packet, length, kIPv6HeaderLen, true, protocol, layout);
}

bool EitherFamilyLayout(const uint8_t* packet, size_t length, uint8_t protocol, L4Layout* layout) {
  if (length > 0 && packet[0] >> 4 == 6) return V6Layout(packet, length, protocol, layout);
  return V4Layout(packet, length, protocol, layout);
}

// The layout of the super-packet a GSO type announces; false for any other GSO type.
bool GsoLayout(uint8_t type, const uint8_t* packet, size_t length, L4Layout* layout) {
  switch (type) {
    case VIRTIO_NET_HDR_GSO_TCPV4:
      return V4Layout(packet, length, kProtoTcp, layout);
    case VIRTIO_NET_HDR_GSO_TCPV6:
      return V6Layout(packet, length, kProtoTcp, layout);
    case VIRTIO_NET_HDR_GSO_UDP_L4:
      // One type for both families, unlike TCP: the IP version says which.
      return EitherFamilyLayout(packet, length, kProtoUdp, layout);
    default:
      return false;
  }
}

// The pseudo-header's addresses and protocol, the same for every segment of a flow.
uint64_t PseudoHeaderAddresses(const uint8_t* packet, const L4Layout& layout) {
  return layout.ipv6 ? ChecksumAdd(packet + 8, 32, layout.protocol) : ChecksumAdd(packet + 12, 8, layout.protocol);
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
  L4Layout layout;
  if (hdr.gso_size == 0 || !GsoLayout(type, packet, length, &layout)) return 0;
  size_t payload = length - layout.ip_header - layout.l4_header;
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
  L4Layout layout;
  GsoLayout(type, packet, length, &layout);
  const bool tcp = layout.protocol == kProtoTcp;
  const size_t headers = layout.ip_header + layout.l4_header;
  const size_t payload = length - headers;
  const size_t mss = hdr.gso_size;
  if (headers + mss > slot_size) return 0;

  const uint16_t first_id = Load16(packet + 4);
  const uint32_t first_seq = tcp ? Load32(packet + layout.ip_header + 4) : 0;
  const uint8_t flags = tcp ? packet[layout.ip_header + 13] : 0;
  const uint64_t pseudo = PseudoHeaderAddresses(packet, layout);
  const size_t checksum_offset = ChecksumOffset(layout.protocol);

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

    uint8_t* l4 = seg + layout.ip_header;
    size_t l4_length = seg_length - layout.ip_header;
    if (tcp) {
      Store32(l4 + 4, first_seq + static_cast<uint32_t>(i * mss));
      uint8_t seg_flags = flags;
      if (i + 1 < count) seg_flags &= static_cast<uint8_t>(~(kTcpFin | kTcpPsh));
      if (i > 0) seg_flags &= static_cast<uint8_t>(~kTcpCwr);
      l4[13] = seg_flags;
    } else {
      Store16(l4 + 4, static_cast<uint16_t>(l4_length));
    }
    Store16(l4 + checksum_offset, 0);
    uint16_t checksum = ChecksumFold(ChecksumAdd(l4, l4_length, pseudo + l4_length));
    // TCP has no "no checksum", and its 0 is as valid as all ones; UDP's 0 would mean none.
    Store16(l4 + checksum_offset, !tcp && checksum == 0 ? kChecksumMangledZero : checksum);
    lengths[i] = static_cast<uint32_t>(seg_length);
  }
  return count;
}

namespace {

constexpr uint8_t kTcpAck = 0x10;
constexpr size_t kMaxRunBytes = 65535;

// A packet the kernel's GRO would consider joining: `protocol` right after
// the IP header, no IPv4 options or fragments, no IPv6 extension headers,
// and an IP length that is the packet's.
bool IsPlain(const uint8_t* p, size_t length, uint8_t protocol, L4Layout* layout) {
  if (length > 0 && p[0] >> 4 == 6) {
    return V6Layout(p, length, protocol, layout) && Load16(p + 4) + kIPv6HeaderLen == length;
  }
  if (!V4Layout(p, length, protocol, layout) || layout->ip_header != 20) return false;
  if ((Load16(p + 6) & 0x3fff) != 0) return false;
  return Load16(p + 2) == length;
}

bool SameIpHeaders(const uint8_t* a, const uint8_t* b, bool ipv6) {
  if (ipv6) {
    // Version, traffic class, flow label, next header, hop limit, addresses; not the payload length.
    return memcmp(a, b, 4) == 0 && a[6] == b[6] && a[7] == b[7] && memcmp(a + 8, b + 8, 32) == 0;
  }
  // Version/ihl, tos, flags, ttl, protocol, addresses; not length, id or checksum.
  return a[0] == b[0] && a[1] == b[1] && a[6] == b[6] && a[8] == b[8] && a[9] == b[9] &&
         memcmp(a + 12, b + 12, 8) == 0;
}

// TCP: ports, ack, data offset, window and every option byte; not seq, flags or checksum.
bool SameTcpHeaders(const uint8_t* ta, const uint8_t* tb, size_t tcp_header) {
  if (memcmp(ta, tb, 4) != 0 || memcmp(ta + 8, tb + 8, 5) != 0 || memcmp(ta + 14, tb + 14, 2) != 0) return false;
  return memcmp(ta + 20, tb + 20, tcp_header - 20) == 0;
}

// Adds the packet at `p` to the run if it is the next segment of the
// first's flow; false (the run ends before it) otherwise. The checks shared
// by TCP and UDP; `same_flow` adds the protocol's own.
template <typename SameFlow>
bool ExtendRun(SegmentRun* run, const uint8_t* first, const L4Layout& layout, const uint8_t* p, size_t length,
               SameFlow same_flow) {
  L4Layout other;
  if (!IsPlain(p, length, layout.protocol, &other) || other.ipv6 != layout.ipv6) return false;
  if (other.l4_header != layout.l4_header || !SameIpHeaders(first, p, layout.ipv6)) return false;
  if (!layout.ipv6) {
    // IPv4 ids count up from the first's, as the kernel's GRO wants and as
    // cutting the joined packet again gives them; with DF set they may also
    // all be the first's (RFC 6864: an atomic datagram's id means nothing).
    uint16_t id = Load16(p + 4);
    uint16_t first_id = Load16(first + 4);
    bool dont_fragment = (first[6] & 0x40) != 0;
    if (id != static_cast<uint16_t>(first_id + run->packets) && !(dont_fragment && id == first_id)) return false;
  }
  size_t payload = length - run->headers;
  if (payload == 0 || payload > run->segment_size || run->total + payload > kMaxRunBytes) return false;
  if (!same_flow(p + layout.ip_header, payload)) return false;
  run->packets++;
  run->total += payload;
  return true;
}

void FindTcpRun(const uint8_t* base, const uint32_t* offsets, const uint32_t* lengths, size_t start, size_t count,
                const L4Layout& layout, SegmentRun* run) {
  const uint8_t* first = base + offsets[start];
  const uint8_t* first_tcp = first + layout.ip_header;
  if (first_tcp[13] != kTcpAck) return;
  uint32_t next_seq = Load32(first_tcp + 4) + static_cast<uint32_t>(run->segment_size);
  for (size_t i = start + 1; i < count && run->packets < kMaxRunSegments; i++) {
    const uint8_t* p = base + offsets[i];
    uint8_t flags = 0;
    bool joined = ExtendRun(run, first, layout, p, lengths[i], [&](const uint8_t* tcp, size_t payload) {
      flags = tcp[13];
      if ((flags & ~kTcpPsh) != kTcpAck || Load32(tcp + 4) != next_seq) return false;
      if (!SameTcpHeaders(first_tcp, tcp, layout.l4_header)) return false;
      next_seq += static_cast<uint32_t>(payload);
      return true;
    });
    if (!joined) break;
    // A short segment or a push ends the run, as it ends a kernel GRO batch.
    run->push = (flags & kTcpPsh) != 0;
    if (lengths[i] - run->headers < run->segment_size || run->push) break;
  }
}

// Packets whose UDP checksum is 0 (IPv4's "none") are never joined: the
// kernel would fill in a checksum for each datagram on cutting the joined
// packet again, so the receiver would get bytes their sender did not send,
// and a zero over IPv6 (invalid, to be dropped) would become a valid
// checksum. The kernel keeps the same line: udp_gro_receive_segment does not
// join them and a socket without checksums cannot send with UDP_SEGMENT.
// Checksums that are present are not verified here, as for TCP: the
// datagram that carried the packet across had its own.
void FindUdpRun(const uint8_t* base, const uint32_t* offsets, const uint32_t* lengths, size_t start, size_t count,
                const L4Layout& layout, SegmentRun* run) {
  const uint8_t* first = base + offsets[start];
  const uint8_t* first_udp = first + layout.ip_header;
  auto whole_datagram = [&](const uint8_t* udp, size_t payload) {
    return Load16(udp + kUdpChecksumOffset) != 0 && Load16(udp + 4) == kUdpHeaderLen + payload;
  };
  if (!whole_datagram(first_udp, run->segment_size)) return;
  for (size_t i = start + 1; i < count && run->packets < kMaxRunSegments; i++) {
    bool joined = ExtendRun(run, first, layout, base + offsets[i], lengths[i], [&](const uint8_t* udp, size_t payload) {
      return memcmp(first_udp, udp, 4) == 0 && whole_datagram(udp, payload);
    });
    if (!joined || lengths[i] - run->headers < run->segment_size) break;
  }
}

}  // namespace

SegmentRun FindRun(const uint8_t* base, const uint32_t* offsets, const uint32_t* lengths, size_t start, size_t count,
                   bool udp_segmentation) {
  const uint8_t* first = base + offsets[start];
  const size_t length = lengths[start];
  SegmentRun run{1, 0, 0, 0, 0, length, false};
  L4Layout layout;
  bool tcp = IsPlain(first, length, kProtoTcp, &layout);
  if (!tcp && !(udp_segmentation && IsPlain(first, length, kProtoUdp, &layout))) return run;
  run.protocol = layout.protocol;
  run.ip_header = layout.ip_header;
  run.headers = layout.ip_header + layout.l4_header;
  run.segment_size = length - run.headers;
  if (run.segment_size == 0) return run;
  if (tcp) {
    FindTcpRun(base, offsets, lengths, start, count, layout, &run);
  } else {
    FindUdpRun(base, offsets, lengths, start, count, layout, &run);
  }
  return run;
}

void PrepareRun(uint8_t* first, const SegmentRun& run, uint8_t* vnet) {
  const size_t ip_header = run.ip_header;
  const bool ipv6 = ip_header == kIPv6HeaderLen;
  const bool tcp = run.protocol == kProtoTcp;
  if (ipv6) {
    Store16(first + 4, static_cast<uint16_t>(run.total - ip_header));
  } else {
    Store16(first + 2, static_cast<uint16_t>(run.total));
    Store16(first + 10, 0);
    Store16(first + 10, ChecksumFold(ChecksumAdd(first, ip_header, 0)));
  }
  uint8_t* l4 = first + ip_header;
  size_t l4_length = run.total - ip_header;
  if (tcp) {
    if (run.push) l4[13] |= kTcpPsh;
  } else {
    Store16(l4 + 4, static_cast<uint16_t>(l4_length));
  }
  // NEEDS_CSUM: the field carries the pseudo-header sum, uncomplemented; the
  // kernel completes each segment's checksum if it ever cuts the packet again.
  L4Layout layout{ip_header, run.headers - ip_header, ipv6, run.protocol};
  uint16_t pseudo = static_cast<uint16_t>(~ChecksumFold(PseudoHeaderAddresses(first, layout) + l4_length));
  Store16(l4 + ChecksumOffset(run.protocol), pseudo);

  uint16_t hdr_len = static_cast<uint16_t>(run.headers);
  uint16_t gso_size = static_cast<uint16_t>(run.segment_size);
  uint16_t csum_start = static_cast<uint16_t>(ip_header);
  uint16_t csum_offset = static_cast<uint16_t>(ChecksumOffset(run.protocol));
  vnet[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  vnet[1] = !tcp ? VIRTIO_NET_HDR_GSO_UDP_L4 : ipv6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4;
  memcpy(vnet + 2, &hdr_len, 2);
  memcpy(vnet + 4, &gso_size, 2);
  memcpy(vnet + 6, &csum_start, 2);
  memcpy(vnet + 8, &csum_offset, 2);
}

}  // namespace miniflannel
