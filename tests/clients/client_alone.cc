// A program linked with the C++ client library alone (tests/CMakeLists.txt):
// every object of logstar_client, logstar_wire and logstar_recording is
// linked whole, so if one of them needs the engine or the daemon this
// program does not link. check_client_links.sh then looks in it for their
// code. (clients/CMakeLists.txt checks the link interface itself when the
// build is generated.)
int main() { return 0; }
