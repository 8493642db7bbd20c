#include "server/peer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace logstar::server {
namespace {

absl::Status Unknown(absl::string_view peer, absl::string_view why) {
  return absl::PermissionDeniedError(
      absl::StrCat("the caller (", peer, ") cannot be identified: ", why,
                   "; shared memory is for clients on the daemon's host, over its Unix socket "
                   "or TCP loopback"));
}

// "fd:N": a connection logstard accepted on its Unix socket.
absl::StatusOr<PeerCredentials> FromUnixSocket(absl::string_view peer, absl::string_view rest) {
  int fd = -1;
  if (!absl::SimpleAtoi(rest, &fd) || fd < 0) return Unknown(peer, "not a descriptor");
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0 || addr.ss_family != AF_UNIX) {
    return Unknown(peer, "not a Unix socket");
  }
  ucred cred{};
  socklen_t cred_len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) != 0) {
    return Unknown(peer, absl::StrCat("SO_PEERCRED: ", std::strerror(errno)));
  }
  PeerCredentials c;
  c.uid = cred.uid;
  c.gid = cred.gid;
  c.how = "unix socket";
  std::vector<gid_t> groups(64);
  for (;;) {
    socklen_t bytes = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &bytes) == 0) {
      groups.resize(bytes / sizeof(gid_t));
      c.groups = std::move(groups);
      c.groups_known = true;
      break;
    }
    if (errno != ERANGE || bytes <= groups.size() * sizeof(gid_t)) break;  // groups unknown
    groups.resize(bytes / sizeof(gid_t));
  }
  return c;
}

// The address bytes as /proc/net/tcp{,6} print them: each 32-bit word of
// the address as it lies in memory, in hex.
std::string ProcAddress(const void* bytes, size_t size) {
  std::string out;
  for (size_t i = 0; i < size; i += 4) {
    uint32_t word;
    std::memcpy(&word, static_cast<const char*>(bytes) + i, 4);
    absl::StrAppendFormat(&out, "%08X", word);
  }
  return out;
}

// The owners of the sockets /proc/net/<table> lists with the local address
// `local` ("ADDR:PORT" in its format), listening sockets excepted.
std::set<uid_t> OwnersOf(const std::string& table, const std::string& local) {
  std::set<uid_t> owners;
  std::ifstream in("/proc/net/" + table);
  std::string line;
  std::getline(in, line);  // the header
  while (std::getline(in, line)) {
    const std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    constexpr absl::string_view kListen = "0A";
    if (f.size() < 8 || f[1] != local || f[3] == kListen) continue;
    uint32_t uid = 0;
    if (absl::SimpleAtoi(f[7], &uid)) owners.insert(uid);
  }
  return owners;
}

// "ipv4:127.0.0.1:5000", "ipv6:[::1]:5000" (or %5B...%5D): the owner of the
// client's socket on this host.
absl::StatusOr<PeerCredentials> FromTcpLoopback(absl::string_view peer) {
  const bool v6 = absl::StartsWith(peer, "ipv6:");
  std::string rest = absl::StrReplaceAll(peer.substr(5), {{"%5B", "["}, {"%5D", "]"}});
  const size_t colon = rest.rfind(':');
  if (colon == std::string::npos) return Unknown(peer, "no port");
  int port = 0;
  if (!absl::SimpleAtoi(rest.substr(colon + 1), &port) || port <= 0 || port > 65535) {
    return Unknown(peer, "no port");
  }
  std::string host = rest.substr(0, colon);
  if (v6) host = std::string(absl::StripSuffix(absl::StripPrefix(host, "["), "]"));
  const std::string port_hex = absl::StrFormat("%04X", port);
  std::set<uid_t> owners;
  auto add = [&](const std::set<uid_t>& more) { owners.insert(more.begin(), more.end()); };
  if (v6) {
    in6_addr a{};
    if (inet_pton(AF_INET6, host.c_str(), &a) != 1) return Unknown(peer, "not an address");
    const bool loopback = IN6_IS_ADDR_LOOPBACK(&a);
    const bool mapped = IN6_IS_ADDR_V4MAPPED(&a);
    if (!loopback && !(mapped && a.s6_addr[12] == 127)) {
      return Unknown(peer, "not a loopback address");
    }
    add(OwnersOf("tcp6", ProcAddress(&a, sizeof(a)) + ":" + port_hex));
    // A client that connected with an IPv4 socket to a dual-stack listener.
    if (mapped) add(OwnersOf("tcp", ProcAddress(&a.s6_addr[12], 4) + ":" + port_hex));
  } else {
    in_addr a{};
    if (inet_pton(AF_INET, host.c_str(), &a) != 1) return Unknown(peer, "not an address");
    if (reinterpret_cast<const uint8_t*>(&a)[0] != 127) {
      return Unknown(peer, "not a loopback address");
    }
    add(OwnersOf("tcp", ProcAddress(&a, sizeof(a)) + ":" + port_hex));
    // A client with a dual-stack IPv6 socket (gRPC's own) connects from the
    // mapped address.
    in6_addr mapped{};
    mapped.s6_addr[10] = mapped.s6_addr[11] = 0xff;
    std::memcpy(&mapped.s6_addr[12], &a, 4);
    add(OwnersOf("tcp6", ProcAddress(&mapped, sizeof(mapped)) + ":" + port_hex));
  }
  if (owners.empty()) return Unknown(peer, "its socket is not in /proc/net/tcp{,6}");
  if (owners.size() > 1) return Unknown(peer, "sockets of several users have its address");
  PeerCredentials c;
  c.uid = *owners.begin();
  c.how = "tcp loopback";
  return c;
}

std::string Mode(mode_t mode) { return absl::StrFormat("%04o", mode & 07777); }

}  // namespace

PeerCredentials PeerCredentials::Self() {
  PeerCredentials c;
  c.uid = geteuid();
  c.gid = getegid();
  const int n = getgroups(0, nullptr);
  c.groups.resize(std::max(n, 0));
  if (n > 0) c.groups.resize(std::max(getgroups(n, c.groups.data()), 0));
  c.groups_known = true;
  c.how = "the daemon itself";
  return c;
}

absl::StatusOr<PeerCredentials> LocalPeerCredentials(absl::string_view peer) {
  if (absl::ConsumePrefix(&peer, "fd:")) return FromUnixSocket(absl::StrCat("fd:", peer), peer);
  if (absl::StartsWith(peer, "ipv4:") || absl::StartsWith(peer, "ipv6:")) {
    return FromTcpLoopback(peer);
  }
  return Unknown(peer, "only logstard's own Unix socket and TCP loopback say who calls");
}

absl::Status CheckCallerMayRead(const PeerCredentials& caller, const struct stat& st, bool has_acl,
                                absl::string_view what) {
  bool may = false;
  if (caller.uid == 0) {
    may = true;  // as the kernel lets root read any file
  } else if (caller.uid == st.st_uid) {
    may = (st.st_mode & S_IRUSR) != 0;
  } else if (has_acl) {
    may = false;  // named users and groups the mode bits do not show
  } else if (caller.groups_known) {
    const bool member =
        caller.gid == st.st_gid ||
        std::find(caller.groups.begin(), caller.groups.end(), st.st_gid) != caller.groups.end();
    may = (st.st_mode & (member ? S_IRGRP : S_IROTH)) != 0;
  } else {
    may = (st.st_mode & S_IRGRP) != 0 && (st.st_mode & S_IROTH) != 0;
  }
  if (may) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      what, " (owner ", st.st_uid, ", group ", st.st_gid, ", mode ", Mode(st.st_mode),
      has_acl ? ", with an ACL" : "", ") is not readable by the caller (uid ", caller.uid,
      caller.groups_known ? "" : ", groups unknown", ", over ", caller.how,
      "): the daemon reads only what its caller could read itself",
      caller.groups_known ? "" : " (over TCP only the owner's or everyone's read bits count)"));
}

bool HasAccessAcl(int fd) { return fgetxattr(fd, "system.posix_acl_access", nullptr, 0) >= 0; }

}  // namespace logstar::server
