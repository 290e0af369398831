// The bench's UDP load: a sender that outruns every path it measures, and
// a sink for the receiving pod. bench e2e compiles it on first use
// (lab/bench/udp-load.ts); it is part of the lab, not of the product.
//
// Why not iperf3: it sends one datagram per system call from one thread
// and tops out at 60-80 kpps here, below what the paths carry, so its
// figure was the sender's, not the path's. This sender hands the kernel up
// to 64 datagrams per sendmmsg(2), or with --gso up to 8 UDP_SEGMENT
// super-packets of 46 datagrams, as QUIC stacks send, and paces to --pps so
// that every path is offered the same load. --threads senders, each its own flow (source
// port), let a kernel path use every core: the kernel forwards a datagram
// in its sender's system call, so one thread would cap a kernel path at
// one core and never outrun it.
//
//   udp-generator send ADDRESS PORT --payload BYTES --seconds S [--pps N] [--gso] [--threads N]
//       prints {"sent":N,"seconds":S,"calls":N,"errors":N,"lastError":"..."}
//   udp-generator sink ADDRESS PORT
//       prints "listening", then reads until it is killed
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

enum { kBatch = 64, kSocketBuffer = 4 << 20, kMaxDatagram = 65507 };

static void fail(const char* what) {
  fprintf(stderr, "udp-generator: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void usage(void) {
  fprintf(stderr,
          "usage: udp-generator send ADDRESS PORT --payload BYTES --seconds S [--pps N] [--gso] [--threads N]\n"
          "       udp-generator sink ADDRESS PORT\n");
  exit(2);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_until(double when) {
  struct timespec ts = {(time_t)when, (long)((when - (time_t)when) * 1e9)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

// An IPv4 or IPv6 socket address from text; exits on anything else.
static socklen_t parse_address(const char* text, const char* port_text, struct sockaddr_storage* out) {
  char* end;
  long port = strtol(port_text, &end, 10);
  if (*end != '\0' || port < 1 || port > 65535) usage();
  memset(out, 0, sizeof(*out));
  struct sockaddr_in* v4 = (struct sockaddr_in*)out;
  struct sockaddr_in6* v6 = (struct sockaddr_in6*)out;
  if (inet_pton(AF_INET, text, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)port);
    return sizeof(*v4);
  }
  if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)port);
    return sizeof(*v6);
  }
  fprintf(stderr, "udp-generator: '%s' is not an IPv4 or IPv6 address\n", text);
  exit(2);
}

static int udp_socket(int family, int buffer_option) {
  int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail("socket");
  int size = kSocketBuffer;
  // The FORCE variants pass the sysctl cap (root); the plain ones are the fallback.
  if (setsockopt(fd, SOL_SOCKET, buffer_option, &size, sizeof(size)) < 0) {
    int plain = buffer_option == SO_SNDBUFFORCE ? SO_SNDBUF : SO_RCVBUF;
    setsockopt(fd, SOL_SOCKET, plain, &size, sizeof(size));
  }
  return fd;
}

static double positive_number(const char* text) {
  char* end;
  double value = strtod(text, &end);
  if (*end != '\0' || !(value >= 0)) usage();
  return value;
}

struct Sender {
  struct sockaddr_storage to;
  socklen_t to_length;
  size_t payload;
  int gso;
  double start, end, pps;  // pps: this thread's share
  uint64_t sent, calls, errors;
  int last_errno;
};

static void* send_paced(void* arg) {
  struct Sender* s = arg;
  int fd = udp_socket(s->to.ss_family, SO_SNDBUFFORCE);
  if (connect(fd, (struct sockaddr*)&s->to, s->to_length) < 0) fail("connect");
  // With --gso each message is one super-packet of `segments` datagrams,
  // the most that fit in one UDP length (the kernel cuts it at `payload`).
  size_t segments = 1;
  if (s->gso) {
    int size = (int)s->payload;
    if (setsockopt(fd, IPPROTO_UDP, UDP_SEGMENT, &size, sizeof(size)) < 0) fail("UDP_SEGMENT");
    segments = kMaxDatagram / s->payload;
    if (segments > kBatch) segments = kBatch;
  }
  const size_t messages = s->gso ? 8 : kBatch;
  static uint8_t data[kMaxDatagram];  // read only, shared by the threads
  struct iovec iov = {data, s->payload * segments};
  struct mmsghdr batch[kBatch];
  memset(batch, 0, sizeof(batch));
  for (size_t i = 0; i < messages; i++) {
    batch[i].msg_hdr.msg_iov = &iov;
    batch[i].msg_hdr.msg_iovlen = 1;
  }
  // A paced thread sends at most a tenth of a millisecond of its load per
  // call (one message at the least), so bursts stay short; a thread that
  // fell behind (off the CPU) catches up in full batches.
  size_t per_wake = messages;
  if (s->pps > 0) {
    double per_call = s->pps / 10000 / segments;
    per_wake = per_call < 1 ? 1 : per_call > messages ? messages : (size_t)per_call;
  }
  for (;;) {
    double t = now();
    if (t >= s->end) break;
    if (s->pps > 0) {
      double due = (t - s->start) * s->pps;
      double wanted = (double)(per_wake * segments);
      if ((double)s->sent + wanted > due) {
        double wake = s->start + ((double)s->sent + wanted) / s->pps;
        if (wake >= s->end) break;
        sleep_until(wake);
      }
    }
    int n = sendmmsg(fd, batch, (unsigned)per_wake, 0);
    s->calls++;
    if (n < 0) {
      // ECONNREFUSED after an ICMP unreachable, ENOBUFS from a full queue: counted, and the
      // load goes on after a pause, so that an error that persists does not spin the CPU.
      s->errors++;
      s->last_errno = errno;
      sleep_until(now() + 1e-4);
      continue;
    }
    s->sent += (uint64_t)n * segments;
  }
  close(fd);
  return NULL;
}

static int send_load(int argc, char** argv) {
  if (argc < 4) usage();
  struct Sender common;
  memset(&common, 0, sizeof(common));
  common.to_length = parse_address(argv[2], argv[3], &common.to);
  double seconds = 0, pps = 0, threads = 1;
  for (int i = 4; i < argc; i++) {
    if (strcmp(argv[i], "--gso") == 0) {
      common.gso = 1;
    } else if (i + 1 < argc && strcmp(argv[i], "--payload") == 0) {
      common.payload = (size_t)positive_number(argv[++i]);
    } else if (i + 1 < argc && strcmp(argv[i], "--seconds") == 0) {
      seconds = positive_number(argv[++i]);
    } else if (i + 1 < argc && strcmp(argv[i], "--pps") == 0) {
      pps = positive_number(argv[++i]);
    } else if (i + 1 < argc && strcmp(argv[i], "--threads") == 0) {
      threads = positive_number(argv[++i]);
    } else {
      usage();
    }
  }
  if (common.payload < 1 || common.payload > 1472 || seconds <= 0 || threads < 1 || threads > 64) usage();
  const size_t count = (size_t)threads;
  struct Sender senders[64];
  pthread_t ids[64];
  common.start = now();
  common.end = common.start + seconds;
  common.pps = pps / (double)count;
  for (size_t i = 0; i < count; i++) {
    senders[i] = common;
    if (pthread_create(&ids[i], NULL, send_paced, &senders[i]) != 0) fail("pthread_create");
  }
  uint64_t sent = 0, calls = 0, errors = 0;
  int last_errno = 0;
  for (size_t i = 0; i < count; i++) {
    pthread_join(ids[i], NULL);
    sent += senders[i].sent;
    calls += senders[i].calls;
    errors += senders[i].errors;
    if (senders[i].last_errno != 0) last_errno = senders[i].last_errno;
  }
  printf("{\"sent\":%llu,\"seconds\":%.6f,\"calls\":%llu,\"errors\":%llu,\"lastError\":\"%s\"}\n", (unsigned long long)sent,
         now() - common.start, (unsigned long long)calls, (unsigned long long)errors, last_errno ? strerror(last_errno) : "");
  return 0;
}

// Reads and throws away until it is killed: what reached the pod is counted
// by the pod's kernel, so the sink keeps no count of its own.
static _Noreturn void sink(int argc, char** argv) {
  if (argc != 4) usage();
  struct sockaddr_storage at;
  socklen_t at_length = parse_address(argv[2], argv[3], &at);
  int fd = udp_socket(at.ss_family, SO_RCVBUFFORCE);
  if (bind(fd, (struct sockaddr*)&at, at_length) < 0) fail("bind");
  printf("listening\n");
  fflush(stdout);

  static uint8_t buffers[kBatch][2048];
  struct iovec iov[kBatch];
  struct mmsghdr batch[kBatch];
  memset(batch, 0, sizeof(batch));
  for (size_t i = 0; i < kBatch; i++) {
    iov[i] = (struct iovec){buffers[i], sizeof(buffers[i])};
    batch[i].msg_hdr.msg_iov = &iov[i];
    batch[i].msg_hdr.msg_iovlen = 1;
  }
  for (;;) {
    if (recvmmsg(fd, batch, kBatch, MSG_WAITFORONE, NULL) < 0 && errno != EINTR) fail("recvmmsg");
  }
}

int main(int argc, char** argv) {
  if (argc < 2) usage();
  if (strcmp(argv[1], "send") == 0) return send_load(argc, argv);
  if (strcmp(argv[1], "sink") == 0) sink(argc, argv);
  usage();
}
