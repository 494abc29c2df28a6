/* toxbot: a headless c-toxcore peer for omnipeer's Tox interop tests.
 * Written for this project against the public <tox/tox.h> API (c-toxcore 0.2.18).
 *
 * Build: cc -O1 -Wall -o toxbot toxbot.c $(pkg-config --cflags --libs toxcore)
 *
 * Options:
 *   -p PORT            fixed UDP port (start_port = end_port); 0 = any
 *   -b HOST:PORT:KEY   bootstrap node (DHT key, 64 hex); repeatable
 *   -s SKHEX           fixed identity: the long-term secret key (64 hex)
 *   -F PKHEX           pre-arranged friend (tox_friend_add_norequest); repeatable
 *   -f TOXID           send a friend request to TOXID (76 hex) ...
 *   -r TEXT            ... with this request message (default "toxbot says hi")
 *   -m TEXT            send TEXT to friend 0 once it is connected
 *   -c N               send it N times ("TEXT #1" .. "TEXT #N"); default 1
 *   -x                 exit 0 once every echo ("echo: <sent>") came back in order
 *   -t SECS            run at most SECS seconds: then exit 1 with -x, else 0
 *   -v                 c-toxcore log to stderr
 * Without -f/-m the bot auto-accepts friend requests and answers every message with
 * "echo: <msg>".
 *
 * Output (stdout, one line each, flushed):
 *   TOXID <76 hex>            DHTKEY <64 hex>             PORT <udp port>
 *   BOOTSTRAP <host:port> ok|fail
 *   SELF CONNECTION <0|1|2>   (0 none, 1 TCP, 2 UDP)
 *   FRIEND_REQUEST <pk hex> '<message>'
 *   FRIEND_ADDED <n> <pk hex>
 *   FRIEND <n> CONNECTION <0|1|2>
 *   SENT <n> <message id> '<text>'
 *   MESSAGE <n> '<text>'
 *   RECEIPT <n> <message id>
 *   DONE                      (all echoes back, with -x)
 *   TIMEOUT
 * Exit codes: 0 success / normal end, 1 timeout with -x, 2 usage or setup error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>
#include <tox/tox.h>

#define MAX_BOOT 16
#define MAX_FRIENDS 16

static const char *message = NULL;
static int count = 1;
static int sent = 0;
static int echoed = 0;
static bool want_exit = false;
static bool done = false;

static void hex(const uint8_t *b, size_t n, char *out) {
    for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02X", b[i]);
    out[2 * n] = 0;
}

static int unhex(const char *s, uint8_t *out, size_t n) {
    if (strlen(s) != 2 * n) return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1) return -1;
        out[i] = (uint8_t)v;
    }
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void on_log(Tox *t, Tox_Log_Level level, const char *file, uint32_t line, const char *func,
                   const char *msg, void *ud) {
    (void)t; (void)ud;
    fprintf(stderr, "[%d] %s:%u %s: %s\n", (int)level, file, line, func, msg);
}

static void on_self(Tox *t, Tox_Connection c, void *ud) {
    (void)t; (void)ud;
    printf("SELF CONNECTION %d\n", (int)c);
}

static void on_request(Tox *t, const uint8_t *pk, const uint8_t *msg, size_t len, void *ud) {
    (void)ud;
    char h[2 * TOX_PUBLIC_KEY_SIZE + 1];
    hex(pk, TOX_PUBLIC_KEY_SIZE, h);
    printf("FRIEND_REQUEST %s '%.*s'\n", h, (int)len, (const char *)msg);
    Tox_Err_Friend_Add err;
    uint32_t n = tox_friend_add_norequest(t, pk, &err);
    if (err == TOX_ERR_FRIEND_ADD_OK) printf("FRIEND_ADDED %u %s\n", n, h);
}

static void send_next(Tox *t, uint32_t f) {
    while (message && sent < count) {
        char buf[TOX_MAX_MESSAGE_LENGTH];
        if (count == 1) snprintf(buf, sizeof buf, "%s", message);
        else snprintf(buf, sizeof buf, "%s #%d", message, sent + 1);
        Tox_Err_Friend_Send_Message err;
        uint32_t id = tox_friend_send_message(t, f, TOX_MESSAGE_TYPE_NORMAL, (const uint8_t *)buf,
                                              strlen(buf), &err);
        if (err != TOX_ERR_FRIEND_SEND_MESSAGE_OK) return; /* retried on the next iteration */
        printf("SENT %u %u '%s'\n", f, id, buf);
        sent++;
    }
}

static void on_friend_conn(Tox *t, uint32_t f, Tox_Connection c, void *ud) {
    (void)ud;
    printf("FRIEND %u CONNECTION %d\n", f, (int)c);
    if (c != TOX_CONNECTION_NONE) send_next(t, f);
}

static void on_message(Tox *t, uint32_t f, Tox_Message_Type type, const uint8_t *msg, size_t len,
                       void *ud) {
    (void)type; (void)ud;
    printf("MESSAGE %u '%.*s'\n", f, (int)len, (const char *)msg);
    if (message) {
        /* sender: check the echo of message number echoed+1 */
        char want[TOX_MAX_MESSAGE_LENGTH + 8];
        if (count == 1) snprintf(want, sizeof want, "echo: %s", message);
        else snprintf(want, sizeof want, "echo: %s #%d", message, echoed + 1);
        if (strlen(want) == len && memcmp(want, msg, len) == 0) {
            echoed++;
            if (echoed == count && want_exit) done = true;
        }
        return;
    }
    char out[TOX_MAX_MESSAGE_LENGTH];
    int n = snprintf(out, sizeof out, "echo: %.*s", (int)len, (const char *)msg);
    if (n < 0) return;
    if ((size_t)n >= sizeof out) n = sizeof out - 1;
    tox_friend_send_message(t, f, TOX_MESSAGE_TYPE_NORMAL, (const uint8_t *)out, (size_t)n, NULL);
}

static void on_receipt(Tox *t, uint32_t f, uint32_t id, void *ud) {
    (void)t; (void)ud;
    printf("RECEIPT %u %u\n", f, id);
}

static void usage(void) {
    fprintf(stderr, "usage: toxbot [-p PORT] [-b HOST:PORT:KEY]... [-s SK] [-F PK]... "
                    "[-f TOXID [-r TEXT]] [-m TEXT [-c N]] [-x] [-t SECS] [-v]\n");
    exit(2);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int port = 0, timeout = 60, nboot = 0, nfriends = 0;
    char *boot[MAX_BOOT];
    const char *friends[MAX_FRIENDS];
    const char *sk = NULL, *toxid = NULL, *reqmsg = "toxbot says hi";
    bool verbose = false;
    int opt;
    while ((opt = getopt(argc, argv, "p:b:s:F:f:r:m:c:xt:v")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'b': if (nboot == MAX_BOOT) usage(); boot[nboot++] = optarg; break;
        case 's': sk = optarg; break;
        case 'F': if (nfriends == MAX_FRIENDS) usage(); friends[nfriends++] = optarg; break;
        case 'f': toxid = optarg; break;
        case 'r': reqmsg = optarg; break;
        case 'm': message = optarg; break;
        case 'c': count = atoi(optarg); if (count < 1) usage(); break;
        case 'x': want_exit = true; break;
        case 't': timeout = atoi(optarg); break;
        case 'v': verbose = true; break;
        default: usage();
        }
    }

    struct Tox_Options *o = tox_options_new(NULL);
    if (!o) return 2;
    tox_options_set_ipv6_enabled(o, false);
    tox_options_set_udp_enabled(o, true);
    tox_options_set_local_discovery_enabled(o, false);
    tox_options_set_tcp_port(o, 0);
    tox_options_set_start_port(o, (uint16_t)port);
    tox_options_set_end_port(o, (uint16_t)port);
    uint8_t skb[TOX_SECRET_KEY_SIZE];
    if (sk) {
        if (unhex(sk, skb, sizeof skb) != 0) usage();
        tox_options_set_savedata_type(o, TOX_SAVEDATA_TYPE_SECRET_KEY);
        tox_options_set_savedata_data(o, skb, sizeof skb);
    }
    if (verbose) tox_options_set_log_callback(o, on_log);
    Tox_Err_New enew;
    Tox *t = tox_new(o, &enew);
    tox_options_free(o);
    if (!t) {
        fprintf(stderr, "tox_new failed: %d\n", (int)enew);
        return 2;
    }

    uint8_t addr[TOX_ADDRESS_SIZE];
    char h[2 * TOX_ADDRESS_SIZE + 1];
    tox_self_get_address(t, addr);
    hex(addr, sizeof addr, h);
    printf("TOXID %s\n", h);
    uint8_t dht[TOX_PUBLIC_KEY_SIZE];
    tox_self_get_dht_id(t, dht);
    hex(dht, sizeof dht, h);
    printf("DHTKEY %s\n", h);
    Tox_Err_Get_Port eport;
    printf("PORT %u\n", (unsigned)tox_self_get_udp_port(t, &eport));

    tox_callback_self_connection_status(t, on_self);
    tox_callback_friend_request(t, on_request);
    tox_callback_friend_connection_status(t, on_friend_conn);
    tox_callback_friend_message(t, on_message);
    tox_callback_friend_read_receipt(t, on_receipt);

    for (int i = 0; i < nboot; i++) {
        char *spec = boot[i];
        char *k = strrchr(spec, ':');
        if (!k) usage();
        *k++ = 0;
        char *p = strrchr(spec, ':');
        if (!p) usage();
        *p++ = 0;
        uint8_t key[TOX_PUBLIC_KEY_SIZE];
        if (unhex(k, key, sizeof key) != 0) usage();
        Tox_Err_Bootstrap eb;
        bool ok = tox_bootstrap(t, spec, (uint16_t)atoi(p), key, &eb);
        printf("BOOTSTRAP %s:%s %s\n", spec, p, ok ? "ok" : "fail");
    }
    for (int i = 0; i < nfriends; i++) {
        uint8_t pk[TOX_PUBLIC_KEY_SIZE];
        if (unhex(friends[i], pk, sizeof pk) != 0) usage();
        Tox_Err_Friend_Add e;
        uint32_t n = tox_friend_add_norequest(t, pk, &e);
        if (e != TOX_ERR_FRIEND_ADD_OK) { fprintf(stderr, "friend add failed: %d\n", (int)e); return 2; }
        printf("FRIEND_ADDED %u %s\n", n, friends[i]);
    }
    if (toxid) {
        uint8_t id[TOX_ADDRESS_SIZE];
        if (unhex(toxid, id, sizeof id) != 0) usage();
        Tox_Err_Friend_Add e;
        uint32_t n = tox_friend_add(t, id, (const uint8_t *)reqmsg, strlen(reqmsg), &e);
        if (e != TOX_ERR_FRIEND_ADD_OK) { fprintf(stderr, "friend request failed: %d\n", (int)e); return 2; }
        printf("FRIEND_ADDED %u %.64s\n", n, toxid);
    }

    double end = now_s() + timeout;
    while (!done) {
        tox_iterate(t, NULL);
        if (message && sent < count && tox_friend_get_connection_status(t, 0, NULL) != TOX_CONNECTION_NONE)
            send_next(t, 0);
        if (now_s() > end) {
            printf("TIMEOUT\n");
            tox_kill(t);
            return want_exit ? 1 : 0;
        }
        usleep(tox_iteration_interval(t) * 1000);
    }
    printf("DONE\n");
    /* let the receipts for the last echoes go out */
    double linger = now_s() + 0.5;
    while (now_s() < linger) {
        tox_iterate(t, NULL);
        usleep(tox_iteration_interval(t) * 1000);
    }
    tox_kill(t);
    return 0;
}
