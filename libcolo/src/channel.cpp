// Shared-memory channels: mapping, waiting (short busy-poll, then the doorbell), peer-death detection.
#include <fcntl.h>
#include <poll.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "colo/colo.h"
#include "colo/common/protocol.h"
#include "colo/common/replies.h"
#include "colo/common/unique_fd.h"
#include "colo/common/wire.h"
#include "channel.h"
#include "cpu_relax.h"

struct colo_client;  // defined in client.cpp

namespace colo::detail {
int fail(int status, std::string message);
int clientRoundTrip(colo_client* c, nlohmann::json req, int timeoutMs, wire::Message& out);
}  // namespace colo::detail

namespace {

using colo::detail::fail;
// Spin, then park. A hand-off between CPUs takes about 0.1 us, so a waiting side first looks back
// to back (kTightLooks, a few microseconds; no pause: in a VM a pause loop can exit to the
// hypervisor, ~0.2 us each here), then with a cpu-relax between looks until kSpinFor has passed
// since the wait began, and only then sleeps on its doorbell. The clock is read only once the
// tight phase is over, never on the fast path.
constexpr int kTightLooks = 4000;
constexpr auto kSpinFor = std::chrono::microseconds(50);
constexpr std::uint64_t kMinSegment = 64 << 10;
constexpr std::uint64_t kMaxSegment = std::uint64_t{1} << 30;

// The memory must be a regular file sealed against shrinking and growing (else the peer could
// ftruncate it and our next access would die of SIGBUS), of the size the offer announced, in
// 64 KiB..1 GiB. Checked before anything is mapped.
int checkMemory(int fd, std::uint64_t offered, std::uint64_t& size) {
  struct stat st{};
  if (::fstat(fd, &st) != 0) return fail(COLO_E_INTERNAL, std::string("fstat(channel memory): ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return fail(COLO_E_PROTOCOL, "channel memory is not a memory file");
  const int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW)) {
    return fail(COLO_E_PROTOCOL, "channel memory is not sealed against shrinking and growing (F_SEAL_SHRINK|F_SEAL_GROW)");
  }
  // Sealed against writing, it cannot be mapped for writing: the peer's fault, not ours.
  if (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) return fail(COLO_E_PROTOCOL, "channel memory is sealed against writing (F_SEAL_WRITE or F_SEAL_FUTURE_WRITE)");
  size = static_cast<std::uint64_t>(st.st_size);
  if (size < kMinSegment || size > kMaxSegment) {
    return fail(COLO_E_PROTOCOL, "channel memory of " + std::to_string(size) + " bytes is outside 64 KiB to 1 GiB");
  }
  if (size != offered) {
    return fail(COLO_E_PROTOCOL, "channel memory of " + std::to_string(size) + " bytes, but the offer said " + std::to_string(offered));
  }
  return COLO_OK;
}

// A doorbell is one end of an AF_UNIX stream socketpair. Anything else (an eventfd, a pipe, a
// datagram socket) could be made to block or misbehave by the peer that passed it.
int checkBell(int fd) {
  struct stat st{};
  int domain = 0, type = 0;
  socklen_t len = sizeof(int);
  if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode) || ::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0 || domain != AF_UNIX ||
      (len = sizeof(int), ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len)) != 0 || type != SOCK_STREAM) {
    return fail(COLO_E_PROTOCOL, "channel doorbell is not a Unix stream socket");
  }
  return COLO_OK;
}

// The segment header is read once, into a copy, and checked before anything is derived from it:
// the peer can rewrite the shared copy at any time.
int mapChannel(colo_channel* ch, int side, std::uint64_t offered) {
  std::uint64_t size = 0;
  if (int rc = checkMemory(ch->mem.get(), offered, size); rc != COLO_OK) return rc;
  ch->size = static_cast<std::size_t>(size);
  ch->base = ::mmap(nullptr, ch->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ch->mem.get(), 0);
  if (ch->base == MAP_FAILED) {
    ch->base = nullptr;
    return fail(COLO_E_INTERNAL, std::string("mmap(channel): ") + std::strerror(errno));
  }
  colo_segment_header h;
  std::memcpy(&h, ch->base, sizeof(h));
  if (h.magic != COLO_CHANNEL_MAGIC || h.version != COLO_CHANNEL_VERSION || h.ring_count != 2) {
    return fail(COLO_E_PROTOCOL, "channel memory has no colo segment header");
  }
  const std::uint64_t cap = h.ring_capacity;
  const std::uint64_t ringBytes = sizeof(colo_ring_header) + cap;
  if (cap < 4096 || cap > (std::uint64_t{1} << 31) || (cap & (cap - 1)) != 0) return fail(COLO_E_PROTOCOL, "channel ring capacity is not a power of two in 4 KiB to 2 GiB");
  for (int i = 0; i < 2; ++i) {
    const std::uint64_t off = h.ring_offset[i];
    if (off % COLO_CACHE_LINE != 0 || off < sizeof(colo_segment_header) || off > size || size - off < ringBytes) {
      return fail(COLO_E_PROTOCOL, "channel ring " + std::to_string(i) + " lies outside the channel memory");
    }
  }
  const auto [lo, hi] = std::minmax(h.ring_offset[0], h.ring_offset[1]);
  if (hi - lo < ringBytes) return fail(COLO_E_PROTOCOL, "channel rings overlap");
  auto view = [&](int i) {
    colo::ring::View v;
    v.h = reinterpret_cast<colo_ring_header*>(static_cast<unsigned char*>(ch->base) + h.ring_offset[i]);
    v.data = reinterpret_cast<unsigned char*>(v.h + 1);
    v.capacity = cap;
    return v;
  };
  ch->tx.r = view(side);
  ch->rx.r = view(1 - side);
  ch->tx.announceMarks();  // before our first record: the peer may then wait on record headers
  return COLO_OK;
}

// A peer that breaks the protocol is treated as gone: this call and every later one fail.
int peerBroke(colo_channel* ch, colo::ring::Violation what) {
  ch->broken = std::string("the peer went away: it broke the channel protocol (") + what + ")";
  return fail(COLO_E_UNAVAILABLE, ch->broken);
}

// One byte to the peer's end of the bell socketpair. MSG_DONTWAIT makes the send non-blocking
// whatever the peer did to the shared file flags; EAGAIN means the peer has unread wake-ups, so it
// will wake anyway. A peer that closed its end is seen by its sleeping side (POLLHUP).
// The peer hung up (and everything it sent before has been read): every later call fails too.
int peerGone(colo_channel* ch) {
  ch->broken = "the peer went away";
  return fail(COLO_E_UNAVAILABLE, ch->broken);
}

void ring(int bell) {
  const char one = 1;
  (void)!::send(bell, &one, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
}

// Sleeps on our doorbell until it rings, the peer hangs up, or the deadline passes.
int sleepOnBell(colo_channel* ch, int timeoutMs) {
  pollfd p[2] = {{ch->bell.get(), POLLIN, 0}, {ch->pair.get(), POLLRDHUP, 0}};
  const int r = ::poll(p, ch->pair ? 2 : 1, timeoutMs);
  if (r == 0) return COLO_E_TIMEOUT;
  if (r < 0) return errno == EINTR ? COLO_OK : COLO_E_INTERNAL;
  if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
    char drain[64];
    const ssize_t n = ::recv(ch->bell.get(), drain, sizeof(drain), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return COLO_E_UNAVAILABLE;  // the peer's end is closed
  }
  if (ch->pair && (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR))) return COLO_E_UNAVAILABLE;
  return COLO_OK;
}

int remainingMs(std::chrono::steady_clock::time_point deadline, int timeoutMs) {
  if (timeoutMs < 0) return -1;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

enum class Look { ready, empty, broken };

// Waits until look() finds something (or the peer breaks the protocol), the peer hangs up, or
// the deadline passes. `flag` is this side's sleeping flag: set (with a full fence) before the
// last look and the sleep, so that the other side, which stores its position, fences and then
// reads the flag, either is seen by that last look or sees the flag and rings.
template <class F>
int waitFor(colo_channel* ch, int timeoutMs, std::uint32_t& flag, F look, Look& l) {
  for (int i = 0; i < kTightLooks && timeoutMs != 0; ++i) {
    if ((l = look()) != Look::empty) return COLO_OK;
  }
  using Clock = std::chrono::steady_clock;
  const auto begin = Clock::now();
  const auto deadline = begin + std::chrono::milliseconds(timeoutMs < 0 ? 0 : timeoutMs);
  const auto spinEnd = timeoutMs < 0 ? begin + kSpinFor : std::min(begin + kSpinFor, deadline);
  while (Clock::now() < spinEnd) {
    for (int i = 0; i < 64; ++i) {
      colo::cpuRelax();
      if ((l = look()) != Look::empty) return COLO_OK;
    }
  }
  for (;;) {
    colo::ring::at(flag).store(1, std::memory_order_seq_cst);
    l = look();
    if (l != Look::empty) {
      colo::ring::at(flag).store(0, std::memory_order_relaxed);
      return COLO_OK;
    }
    const int rc = sleepOnBell(ch, remainingMs(deadline, timeoutMs));
    colo::ring::at(flag).store(0, std::memory_order_relaxed);
    if ((l = look()) != Look::empty) return COLO_OK;  // what a dying peer sent before it went is still ours
    if (rc != COLO_OK) return rc;
  }
}

int sendOffer(int sock, const int* fds, std::uint64_t bytes) {
  char tag[9] = {'C'};
  std::memcpy(tag + 1, &bytes, 8);
  return colo::wire::sendRaw(sock, tag, sizeof(tag), std::span<const int>(fds, 3)) ? COLO_OK : COLO_E_UNAVAILABLE;
}

// A channel from the segment and the bells; side s keeps bell s (its end of the bell socketpair:
// it sleeps on it and wakes the peer through it) and closes the other.
int adopt(colo::UniqueFd mem, colo::UniqueFd bell0, colo::UniqueFd bell1, int pairFd, int side, std::uint64_t offered, colo_channel** out) {
  if (int rc = checkBell(bell0.get()); rc != COLO_OK) return rc;
  if (int rc = checkBell(bell1.get()); rc != COLO_OK) return rc;
  auto* ch = new colo_channel;
  ch->mem = std::move(mem);
  ch->bell = side == 0 ? std::move(bell0) : std::move(bell1);
  if (pairFd >= 0) ch->pair.reset(::fcntl(pairFd, F_DUPFD_CLOEXEC, 0));
  struct statfs fs{};
  ch->memory = ::fstatfs(ch->mem.get(), &fs) == 0 && static_cast<unsigned long>(fs.f_type) == HUGETLBFS_MAGIC ? "hugepages" : "memfd";
  if (int rc = mapChannel(ch, side, offered); rc != COLO_OK) {
    delete ch;
    return rc;
  }
  *out = ch;
  return COLO_OK;
}

}  // namespace

extern "C" {

int colo_channel_open(colo_client* c, int pair_fd, unsigned long long bytes, colo_channel** out) try {
  if (!c || pair_fd < 0 || !out) return fail(COLO_E_INVALID, "NULL argument");
  colo::wire::Message m;
  if (int rc = colo::detail::clientRoundTrip(c, colo::proto::ChannelRequest{.bytes = bytes}, 5000, m); rc != COLO_OK) return rc;
  auto reply = colo::proto::parseChannelReply(m.body);
  if (!reply) return fail(COLO_E_PROTOCOL, "colo-node's reply: " + reply.error().message);
  if (m.fds.size() != 3) return fail(COLO_E_PROTOCOL, "channel reply did not carry memory and two doorbells");
  const std::uint64_t actual = reply->bytes;  // hugepages round the asked size up
  const int fds[3] = {m.fds[0].get(), m.fds[1].get(), m.fds[2].get()};
  if (int rc = sendOffer(pair_fd, fds, actual); rc != COLO_OK) return fail(rc, "the peer went away before the channel was handed over");
  return adopt(std::move(m.fds[0]), std::move(m.fds[1]), std::move(m.fds[2]), pair_fd, 0, actual, out);
} catch (...) {
  return fail(COLO_E_INTERNAL, "unexpected failure in colo_channel_open");
}

int colo_channel_accept(int pair_fd, int timeout_ms, colo_channel** out) try {
  if (pair_fd < 0 || !out) return fail(COLO_E_INVALID, "bad argument");
  pollfd p{pair_fd, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) <= 0) return fail(COLO_E_TIMEOUT, "no channel offered within the timeout");
  char tag[9];
  // Only a channel offer is consumed; anything else stays on the pair for the application.
  if (::recv(pair_fd, tag, 1, MSG_PEEK | MSG_DONTWAIT) != 1 || tag[0] != 'C') return fail(COLO_E_PROTOCOL, "the peer did not offer a channel");
  auto rec = colo::wire::recvRaw(pair_fd, tag, sizeof(tag), MSG_DONTWAIT);
  if (!rec) return fail(COLO_E_PROTOCOL, "reading the channel offer: " + rec.error().message);
  auto& fds = rec->fds;
  if (rec->size != sizeof(tag) || tag[0] != 'C' || fds.size() != 3) return fail(COLO_E_PROTOCOL, "the peer did not offer a channel");
  std::uint64_t offered;
  std::memcpy(&offered, tag + 1, 8);
  return adopt(std::move(fds[0]), std::move(fds[1]), std::move(fds[2]), pair_fd, 1, offered, out);
} catch (...) {
  return fail(COLO_E_INTERNAL, "unexpected failure in colo_channel_accept");
}

int colo_channel_local_pair(unsigned long long bytes, colo_channel** side0, colo_channel** side1) try {
  if (!side0 || !side1 || bytes < 65536) return fail(COLO_E_INVALID, "bad argument (at least 64 KiB)");
  if (bytes > kMaxSegment) return fail(COLO_E_INVALID, "bad argument (at most 1 GiB)");
  colo::UniqueFd mem(::memfd_create("colo-channel", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!mem || ::ftruncate(mem.get(), static_cast<off_t>(bytes)) != 0 || ::fcntl(mem.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return fail(COLO_E_INTERNAL, std::string("memfd: ") + std::strerror(errno));
  }
  void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, mem.get(), 0);
  if (base == MAP_FAILED) return fail(COLO_E_INTERNAL, "mmap");
  const bool ok = colo_channel_layout_init(base, bytes) != 0;
  ::munmap(base, bytes);
  if (!ok) return fail(COLO_E_INVALID, "too small");
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) return fail(COLO_E_INTERNAL, "socketpair");
  colo::UniqueFd bell0(sv[0]), bell1(sv[1]);
  colo::UniqueFd mem1(::fcntl(mem.get(), F_DUPFD_CLOEXEC, 0));
  colo::UniqueFd bell0b(::fcntl(bell0.get(), F_DUPFD_CLOEXEC, 0)), bell1b(::fcntl(bell1.get(), F_DUPFD_CLOEXEC, 0));
  colo_channel *a = nullptr, *b = nullptr;
  if (int rc = adopt(std::move(mem), std::move(bell0), std::move(bell1), -1, 0, bytes, &a); rc != COLO_OK) return rc;
  if (int rc = adopt(std::move(mem1), std::move(bell0b), std::move(bell1b), -1, 1, bytes, &b); rc != COLO_OK) {
    delete a;
    return rc;
  }
  *side0 = a;
  *side1 = b;
  return COLO_OK;
} catch (...) {
  return fail(COLO_E_INTERNAL, "unexpected failure in colo_channel_local_pair");
}

int colo_channel_reserve(colo_channel* ch, unsigned long len, int timeout_ms, void** buf) {
  if (!ch || !buf) return fail(COLO_E_INVALID, "NULL argument");
  if (!ch->broken.empty()) return fail(COLO_E_UNAVAILABLE, ch->broken);
  if (len > ch->tx.r.maxMessage()) return fail(COLO_E_INVALID, "message larger than the channel allows");
  colo::ring::Violation bad = nullptr;
  if ((*buf = ch->tx.reserve(len, bad))) {  // the fast path: room at the first look
    ch->reserved = len;
    return COLO_OK;
  }
  if (bad) return peerBroke(ch, bad);
  Look l = Look::empty;
  const int rc = waitFor(ch, timeout_ms, ch->tx.r.h->producer_sleeping, [&] {
    if ((*buf = ch->tx.reserve(len, bad))) return Look::ready;
    return bad ? Look::broken : Look::empty;
  }, l);
  if (l == Look::broken) return peerBroke(ch, bad);
  if (l == Look::ready) {
    ch->reserved = len;
    return COLO_OK;
  }
  return rc == COLO_E_UNAVAILABLE ? peerGone(ch) : fail(rc, "channel full");
}

int colo_channel_commit(colo_channel* ch, unsigned long len) {
  if (!ch) return fail(COLO_E_INVALID, "NULL argument");
  if (!ch->broken.empty()) return fail(COLO_E_UNAVAILABLE, ch->broken);
  if (len > ch->reserved) return fail(COLO_E_INVALID, "commit larger than the reservation");
  ch->tx.commit(len);
  ch->reserved = 0;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (colo::ring::at(ch->tx.r.h->consumer_sleeping).load(std::memory_order_relaxed)) ring(ch->bell.get());
  return COLO_OK;
}

int colo_channel_read(colo_channel* ch, int timeout_ms, const void** buf, unsigned long* len) {
  if (!ch || !buf || !len) return fail(COLO_E_INVALID, "NULL argument");
  if (!ch->broken.empty()) return fail(COLO_E_UNAVAILABLE, ch->broken);
  std::uint64_t l = 0;
  colo::ring::Violation bad = nullptr;
  if (!(*buf = ch->rx.peek(l, bad)) && !bad) {  // else the fast path: a message at the first look
    Look got = Look::empty;
    const int rc = waitFor(ch, timeout_ms, ch->rx.r.h->consumer_sleeping, [&] {
      if ((*buf = ch->rx.peek(l, bad))) return Look::ready;
      return bad ? Look::broken : Look::empty;
    }, got);
    if (got == Look::empty) return rc == COLO_E_UNAVAILABLE ? peerGone(ch) : fail(rc, "no message");
  }
  if (bad) return peerBroke(ch, bad);
  *len = static_cast<unsigned long>(l);
  return COLO_OK;
}

int colo_channel_release(colo_channel* ch) {
  if (!ch) return fail(COLO_E_INVALID, "NULL argument");
  if (!ch->broken.empty()) return fail(COLO_E_UNAVAILABLE, ch->broken);
  if (ch->rx.need == 0) return fail(COLO_E_INVALID, "nothing read to release");
  ch->rx.release();
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (colo::ring::at(ch->rx.r.h->producer_sleeping).load(std::memory_order_relaxed)) ring(ch->bell.get());
  return COLO_OK;
}

unsigned long colo_channel_max_message(const colo_channel* ch) { return ch ? static_cast<unsigned long>(ch->tx.r.maxMessage()) : 0; }
const char* colo_channel_memory(const colo_channel* ch) { return ch ? ch->memory.c_str() : ""; }
void colo_channel_close(colo_channel* ch) { delete ch; }

}  // extern "C"
