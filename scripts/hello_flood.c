// A hostile peer for scripts/chaos.sh hello-flood (issue 27, point 3): floods a cerm
// coordinator with HELLOs, each on a new connection and so under a new routing id, IN_FLIGHT
// connections at a time; every other HELLO carries the run's config hash (admitted: the
// coordinator holds it as a joining worker), the rest another (refused). Each connection waits
// up to WAIT_MS (1000) for its WELCOME or REFUSE before it closes, so the flood runs as fast as
// the coordinator answers, or at most RATE a second when RATE > 0; a short WAIT_MS makes a
// flooder that hardly waits for answers. Stops after SECONDS or
// MAX_HELLOS, whichever comes first, or at SIGINT or SIGTERM, and prints
// "hellos=N welcomed=N refused=N unanswered=N seconds=S". PROTOCOL is the cerm protocol version
// the coordinator speaks (MessageCodec.version; scripts/chaos.sh reads it from the source): a
// HELLO of another version is dropped as malformed, unanswered, and floods nothing.
//
//   cc -O2 -o hello_flood scripts/hello_flood.c -lzmq
//   hello_flood tcp://127.0.0.1:5557 c6cefea66c1f74f1 4 30 [IN_FLIGHT=8] [MAX_HELLOS=1000000] [RATE=0] [WAIT_MS=1000]
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

static volatile sig_atomic_t stopping = 0;
static void stop(int signal) { (void)signal; stopping = 1; }

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static size_t put(uint8_t *p, uint64_t value, int bytes) {   // little-endian, as docs/PROTOCOL.md
    for (int i = 0; i < bytes; i++) p[i] = (uint8_t)(value >> (8 * i));
    return (size_t)bytes;
}

// HELLO's header and body frames (docs/PROTOCOL.md, sections 2 and 4).
static int send_hello(void *socket, long index, uint64_t hash, int protocol) {
    uint8_t body[64];
    char name[32];
    int length = snprintf(name, sizeof name, "flood-%ld", index);
    size_t n = put(body, (uint64_t)length, 4);
    memcpy(body + n, name, (size_t)length); n += (size_t)length;
    n += put(body + n, 1, 2);   // capacity
    n += put(body + n, (uint64_t)protocol, 2);   // protocol version
    n += put(body + n, hash, 8);
    n += put(body + n, 0, 1);   // kind: cpu
    uint8_t header[12] = {'C', 'E', 'R', 'M'};
    put(header + 4, (uint64_t)protocol, 2); header[6] = 1; header[7] = 0; put(header + 8, n, 4);
    if (zmq_send(socket, header, sizeof header, ZMQ_SNDMORE) < 0) return -1;
    return zmq_send(socket, body, n, 0) < 0 ? -1 : 0;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s ENDPOINT CONFIG_HASH_HEX PROTOCOL SECONDS [IN_FLIGHT] [MAX_HELLOS] [RATE] [WAIT_MS]\n", argv[0]);
        return 2;
    }
    const char *endpoint = argv[1];
    uint64_t hash = strtoull(argv[2], NULL, 16);
    int protocol = atoi(argv[3]);
    double seconds = atof(argv[4]);
    int in_flight = argc > 5 ? atoi(argv[5]) : 8;
    long max_hellos = argc > 6 ? atol(argv[6]) : 1000000;
    double rate = argc > 7 ? atof(argv[7]) : 0;
    double wait = (argc > 8 ? atof(argv[8]) : 1000) / 1000;
    if (wait <= 0 || protocol < 1 || protocol > 65535 || in_flight < 1 || in_flight > 256 || seconds <= 0 || max_hellos < 1 || rate < 0) { fprintf(stderr, "hello_flood: bad arguments\n"); return 2; }

    signal(SIGINT, stop);
    signal(SIGTERM, stop);
    void *context = zmq_ctx_new();
    void *sockets[256] = {0};
    double opened[256] = {0};
    long hellos = 0, welcomed = 0, refused = 0, unanswered = 0;
    double start = now(), end = start + seconds;
    int zero = 0;
    while (!stopping) {
        int open = 0;
        for (int i = 0; i < in_flight; i++) {
            if (!sockets[i] && now() < end && hellos < max_hellos && (rate == 0 || hellos < rate * (now() - start))) {
                sockets[i] = zmq_socket(context, ZMQ_DEALER);
                zmq_setsockopt(sockets[i], ZMQ_LINGER, &zero, sizeof zero);
                if (zmq_connect(sockets[i], endpoint) != 0) { fprintf(stderr, "hello_flood: connect %s: %s\n", endpoint, zmq_strerror(zmq_errno())); return 1; }
                send_hello(sockets[i], hellos, hellos % 2 == 0 ? hash : hash ^ 0xff, protocol);
                opened[i] = now();
                hellos++;
            }
            if (sockets[i]) open++;
        }
        if (open == 0) {
            if (now() >= end || hellos >= max_hellos) break;
            nanosleep(&(struct timespec){0, 1000000}, NULL);   // waiting for the rate to allow one
            continue;
        }
        zmq_pollitem_t items[256];
        for (int i = 0; i < in_flight; i++) { items[i].socket = sockets[i]; items[i].fd = -1; items[i].events = sockets[i] ? ZMQ_POLLIN : 0; items[i].revents = 0; }
        zmq_poll(items, in_flight, wait < 0.02 ? (int)(wait * 1000) + 1 : 20);
        for (int i = 0; i < in_flight; i++) {
            if (!sockets[i]) continue;
            int done = 0;
            if (items[i].revents & ZMQ_POLLIN) {
                uint8_t header[12];
                int got = zmq_recv(sockets[i], header, sizeof header, 0);
                int more = 0; size_t size = sizeof more;
                zmq_getsockopt(sockets[i], ZMQ_RCVMORE, &more, &size);
                if (more) { uint8_t body[8192]; zmq_recv(sockets[i], body, sizeof body, 0); }
                if (got == 12 && header[6] == 2) welcomed++;
                else if (got == 12 && header[6] == 3) refused++;
                else unanswered++;
                done = 1;
            } else if (now() - opened[i] > wait) {
                unanswered++;
                done = 1;
            }
            if (done) { zmq_close(sockets[i]); sockets[i] = NULL; }
        }
    }
    for (int i = 0; i < in_flight; i++) if (sockets[i]) { zmq_close(sockets[i]); unanswered++; }
    printf("hellos=%ld welcomed=%ld refused=%ld unanswered=%ld seconds=%.1f\n", hellos, welcomed, refused, unanswered, now() - start);
    zmq_ctx_term(context);
    return 0;
}
