// TCP and UDP segmentation for the TUN offload path, as plain functions over
// buffers so they can be tested without a device.
//
// With IFF_VNET_HDR and TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, and
// TUN_F_USO4 | TUN_F_USO6 where the kernel has them), the kernel hands the TUN
// reader TCP and UDP "super-packets" of up to 64 KiB, each behind a
// virtio_net_hdr that says how to cut it (gso_size) and where a checksum is
// still to be filled in. Reading one super-packet instead of ~45 MTU-sized
// packets is most of the win; the cutting happens here, so the wire still
// carries ordinary, MTU-sized IP packets (flannel's format).
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace miniflannel {

constexpr size_t kVirtioNetHdrLen = 10;
constexpr size_t kIPv6HeaderLen = 40;
// The largest frame a read returns: an IPv6 header plus the largest payload its length field holds.
constexpr size_t kMaxFrameLen = kVirtioNetHdrLen + kIPv6HeaderLen + 65535;

struct VirtioNetHdr {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
};

VirtioNetHdr ParseVirtioNetHdr(const uint8_t* p);

// RFC 1071 sum of bytes, not yet folded or complemented; `initial` chains sums.
uint64_t ChecksumAdd(const uint8_t* data, size_t length, uint64_t initial);
uint16_t ChecksumFold(uint64_t sum);

// How many output packets `packet` becomes (1 unless it is a TCP or UDP super-packet);
// 0 if the header asks for something this reader does not do, or is inconsistent.
size_t SegmentCount(const VirtioNetHdr& hdr, const uint8_t* packet, size_t length);

// Writes the packet(s) into slots of `slot_size` bytes at `out`, with every
// checksum complete, and their lengths into `lengths`. The caller has made
// room for SegmentCount() slots. Returns the number written (0: malformed).
size_t Segment(const VirtioNetHdr& hdr, const uint8_t* packet, size_t length, uint8_t* out, size_t slot_size,
               uint32_t* lengths);

// The other direction: before writing to the TUN, consecutive segments of
// one flow are joined into one super-packet the kernel takes whole
// (userspace GRO), so the pod's stack sees one 64 KiB receive instead of
// ~45. The rules follow the kernel's tcp_gro_receive and
// udp_gro_receive_segment: same addresses, ports, IP header bytes but for
// length, id and checksum; IPv4 ids counting up from the first's, or all
// the first's with DF set (over IPv6: traffic class, flow label and hop
// limit alike, and no extension headers); no IPv4 options or fragments; one
// family per run; no segment larger than the first, and a shorter one ends
// the run. TCP also: TCP header bytes alike but for sequence, flags and
// checksum; no flags but ACK (PSH may end a run); sequence numbers
// contiguous. UDP only where the device takes UDP super-packets (USO).

struct SegmentRun {
  size_t packets;       // how many packets from the start of the list join (>= 1)
  uint8_t protocol;     // 6 (TCP) or 17 (UDP) when the first packet is one a run may start with
  size_t ip_header;     // IP header bytes of the first: 20 for IPv4, 40 for IPv6
  size_t headers;       // IP + TCP or UDP header bytes of the first
  size_t segment_size;  // payload bytes of the first: every packet but the last has this many
  size_t total;         // length of the joined packet
  bool push;            // TCP: the last segment joined has PSH, which the joined packet keeps
};

// How many of the packets at `offsets[i]`/`lengths[i]`, from `start`, join
// the first one; UDP packets only with `udp_segmentation`.
SegmentRun FindRun(const uint8_t* base, const uint32_t* offsets, const uint32_t* lengths, size_t start, size_t count,
                   bool udp_segmentation);

// Rewrites the first packet's headers in place for the joined packet and
// fills `vnet` (kVirtioNetHdrLen bytes) to describe it to the kernel.
void PrepareRun(uint8_t* first, const SegmentRun& run, uint8_t* vnet);

constexpr size_t kMaxRunSegments = 64;

// Walks a batch the way the offloading TUN writer does: joins runs, and
// calls emit(iov, iov_count, packets) once per frame to write, where iov[0]
// is the virtio header. Rewrites the headers of joined packets in `base`.
template <typename Emit>
void ForEachFrame(uint8_t* base, const uint32_t* offsets, const uint32_t* lengths, size_t count,
                  bool udp_segmentation, Emit emit) {
  uint8_t vnet[kVirtioNetHdrLen];
  iovec parts[1 + kMaxRunSegments];
  for (size_t i = 0; i < count;) {
    SegmentRun run = FindRun(base, offsets, lengths, i, count, udp_segmentation);
    if (run.packets == 1) {
      memset(vnet, 0, sizeof(vnet));  // one whole packet, checksums done
    } else {
      PrepareRun(base + offsets[i], run, vnet);
    }
    size_t iov = 0;
    parts[iov++] = {vnet, kVirtioNetHdrLen};
    parts[iov++] = {base + offsets[i], lengths[i]};
    for (size_t k = 1; k < run.packets; k++) {
      parts[iov++] = {base + offsets[i + k] + run.headers, lengths[i + k] - run.headers};
    }
    emit(parts, iov, run.packets);
    i += run.packets;
  }
}

}  // namespace miniflannel
