/* toxbot_ngc: a headless c-toxcore >= 0.2.19 peer for omnipeer's NGC (tox_group_*)
 * interop tests. Written for this project against the public <tox/tox.h> API of
 * c-toxcore 0.2.20 (Debian trixie's libtoxcore, unpacked by scripts/install-test-deps.sh
 * into /opt/toxcore-0.2.20: the system's 0.2.18 has no NGC).
 *
 * Build: cc -O1 -Wall -o toxbot_ngc toxbot_ngc.c -I PREFIX/usr/include \
 *           -L PREFIX/usr/lib/x86_64-linux-gnu -ltoxcore   (run with LD_LIBRARY_PATH)
 *
 * Options:
 *   -p PORT            fixed UDP port; 0 = any
 *   -b HOST:PORT:KEY   bootstrap node; repeatable
 *   -s SKHEX           fixed identity (long-term secret key, 64 hex)
 *   -F PKHEX           pre-arranged friend (tox_friend_add_norequest); repeatable
 *   -f TOXID           send a friend request to TOXID
 *   -n NAME            our name (also our group nick)
 *   -t SECS            run at most SECS seconds
 *   -m TEXT            send TEXT to friend 0 once connected (messenger check)
 *   -C NAME            create a private group named NAME at start
 *   -G N               once friend N is connected (and we are in group 0), invite it;
 *                      repeatable
 *   -J                 accept every group invite
 *   -M TEXT            send TEXT to group 0 once it has -K peers (us included)
 *   -K N               peers to wait for before -M (default 2)
 *   -R SECS            after -M, send "TEXT #2", "TEXT #3"... every SECS seconds
 *   -v                 c-toxcore log to stderr
 * Without -m the bot accepts friend requests and answers friend messages "echo: <msg>".
 *
 * Output (stdout, one line each, flushed):
 *   TOXID <76 hex>   DHTKEY <64 hex>   PORT <port>   SELF CONNECTION <0|1|2>
 *   FRIEND <n> CONNECTION <0|1|2>     MESSAGE <n> '<text>'
 *   GROUP_CREATED <g> <chat id hex>   GROUP_INVITED <friend>
 *   GROUP_INVITE <friend> '<group name>'   GROUP_JOINED <g>   GROUP_SELF_JOIN <g>
 *   GROUP_JOIN_FAIL <g> <type>
 *   GROUP_PEER_JOIN <g> '<name>'      GROUP_PEER_EXIT <g> '<name>'
 *   GROUP_PEERS <g> <count> '<name>'...   (sorted, us included; on every change)
 *   GROUP_MESSAGE <g> '<name>' '<text>'   GROUP_SENT <g> '<text>'
 *   TIMEOUT
 */
#define _DEFAULT_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>
#include <tox/tox.h>
#include "toxbot_common.h"

#define MAX_BOOT 16
#define MAX_FRIENDS 16
#define MAX_PEERS 64

static const char *name = "toxbot";
static const char *friend_msg = NULL;
static const char *group_name = NULL;
static const char *group_msg = NULL;
static unsigned need_peers = 2;
static bool join_invites = false;
static int invite[MAX_FRIENDS];
static int ninvite = 0;
static bool invited[MAX_FRIENDS];
static bool connected[MAX_FRIENDS];
static bool in_group = false;
static bool group_msg_sent = false;
static int repeat_secs = 0;
static bool friend_msg_sent = false;
static uint32_t peers[MAX_PEERS];
static int npeers = 0;

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
static void out(const char *fmt, ...) {
    va_list a;
    va_start(a, fmt);
    vprintf(fmt, a);
    va_end(a);
    putchar('\n');
    fflush(stdout);
}

static void usage(void) {
    fprintf(stderr, "toxbot_ngc: bad arguments (see the comment at the top of toxbot_ngc.c)\n");
    exit(2);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void peer_name(const Tox *t, uint32_t g, uint32_t p, char *buf, size_t cap) {
    Tox_Err_Group_Peer_Query e;
    size_t n = tox_group_peer_get_name_size(t, g, p, &e);
    if (e != TOX_ERR_GROUP_PEER_QUERY_OK || n >= cap) {
        buf[0] = 0;
        return;
    }
    tox_group_peer_get_name(t, g, p, (uint8_t *)buf, &e);
    buf[n] = 0;
}

static void print_peers(const Tox *t, uint32_t g) {
    char names[MAX_PEERS + 1][TOX_MAX_NAME_LENGTH + 1];
    char *ptr[MAX_PEERS + 1];
    int n = 0;
    snprintf(names[n], sizeof names[n], "%s", name);
    ptr[n] = names[n];
    n++;
    for (int i = 0; i < npeers; i++) {
        peer_name(t, g, peers[i], names[n], sizeof names[n]);
        ptr[n] = names[n];
        n++;
    }
    qsort(ptr, n, sizeof ptr[0], cmp_str);
    char line[8192];
    int at = snprintf(line, sizeof line, "GROUP_PEERS %u %d", g, n);
    for (int i = 0; i < n && at < (int)sizeof line - 200; i++) at += snprintf(line + at, sizeof line - at, " '%s'", ptr[i]);
    out("%s", line);
}

static void on_self(Tox *t, TOX_CONNECTION c, void *u) {
    (void)t; (void)u;
    out("SELF CONNECTION %d", (int)c);
}

static void on_friend_conn(Tox *t, uint32_t f, TOX_CONNECTION c, void *u) {
    (void)t; (void)u;
    if (f < MAX_FRIENDS) connected[f] = c != TOX_CONNECTION_NONE;
    out("FRIEND %u CONNECTION %d", f, (int)c);
}

static void on_request(Tox *t, const uint8_t *pk, const uint8_t *m, size_t len, void *u) {
    (void)m; (void)len; (void)u;
    Tox_Err_Friend_Add e;
    tox_friend_add_norequest(t, pk, &e);
}

static void on_message(Tox *t, uint32_t f, TOX_MESSAGE_TYPE ty, const uint8_t *m, size_t len, void *u) {
    (void)u;
    out("MESSAGE %u '%.*s'", f, (int)len, (const char *)m);
    if (!friend_msg && !(len >= 6 && memcmp(m, "echo: ", 6) == 0)) {
        char r[TOX_MAX_MESSAGE_LENGTH];
        int n = snprintf(r, sizeof r, "echo: %.*s", (int)len, (const char *)m);
        Tox_Err_Friend_Send_Message e;
        tox_friend_send_message(t, f, ty, (const uint8_t *)r, (size_t)n < sizeof r ? (size_t)n : sizeof r - 1, &e);
    }
}

static void on_group_invite(Tox *t, uint32_t f, const uint8_t *data, size_t len, const uint8_t *gname, size_t glen,
                            void *u) {
    (void)u;
    out("GROUP_INVITE %u '%.*s'", f, (int)glen, (const char *)gname);
    if (!join_invites) return;
    Tox_Err_Group_Invite_Accept e;
    uint32_t g = tox_group_invite_accept(t, f, data, len, (const uint8_t *)name, strlen(name), NULL, 0, &e);
    if (e == TOX_ERR_GROUP_INVITE_ACCEPT_OK) {
        out("GROUP_JOINED %u", g);
    } else {
        out("GROUP_JOIN_ERROR %d", (int)e);
    }
}

static void on_self_join(Tox *t, uint32_t g, void *u) {
    (void)u;
    in_group = true;
    out("GROUP_SELF_JOIN %u", g);
    print_peers(t, g);
}

static void on_join_fail(Tox *t, uint32_t g, Tox_Group_Join_Fail ty, void *u) {
    (void)t; (void)u;
    out("GROUP_JOIN_FAIL %u %d", g, (int)ty);
}

static void on_peer_join(Tox *t, uint32_t g, uint32_t p, void *u) {
    (void)u;
    char nm[TOX_MAX_NAME_LENGTH + 1];
    peer_name(t, g, p, nm, sizeof nm);
    out("GROUP_PEER_JOIN %u '%s'", g, nm);
    if (npeers < MAX_PEERS) peers[npeers++] = p;
    print_peers(t, g);
}

static void on_peer_exit(Tox *t, uint32_t g, uint32_t p, Tox_Group_Exit_Type ty, const uint8_t *nm, size_t nlen,
                         const uint8_t *part, size_t plen, void *u) {
    (void)ty; (void)part; (void)plen; (void)u;
    out("GROUP_PEER_EXIT %u '%.*s'", g, (int)nlen, (const char *)nm);
    for (int i = 0; i < npeers; i++) {
        if (peers[i] == p) {
            peers[i] = peers[--npeers];
            break;
        }
    }
    print_peers(t, g);
}

static void on_peer_name(Tox *t, uint32_t g, uint32_t p, const uint8_t *nm, size_t len, void *u) {
    (void)p; (void)u;
    out("GROUP_PEER_NAME %u '%.*s'", g, (int)len, (const char *)nm);
    print_peers(t, g);
}

static void on_group_message(Tox *t, uint32_t g, uint32_t p, TOX_MESSAGE_TYPE ty, const uint8_t *m, size_t len,
                             uint32_t id, void *u) {
    (void)ty; (void)id; (void)u;
    char nm[TOX_MAX_NAME_LENGTH + 1];
    peer_name(t, g, p, nm, sizeof nm);
    out("GROUP_MESSAGE %u '%s' '%.*s'", g, nm, (int)len, (const char *)m);
}

int main(int argc, char **argv) {
    int port = 0, timeout = 120, opt;
    bool verbose = false;
    const char *sk = NULL, *req = NULL;
    const char *boot[MAX_BOOT];
    int nboot = 0;
    const char *friends[MAX_FRIENDS];
    int nfriends = 0;
    while ((opt = getopt(argc, argv, "p:b:s:F:f:n:t:m:C:G:JM:K:R:v")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'b': if (nboot < MAX_BOOT) boot[nboot++] = optarg; break;
        case 's': sk = optarg; break;
        case 'F': if (nfriends < MAX_FRIENDS) friends[nfriends++] = optarg; break;
        case 'f': req = optarg; break;
        case 'n': name = optarg; break;
        case 't': timeout = atoi(optarg); break;
        case 'm': friend_msg = optarg; break;
        case 'C': group_name = optarg; break;
        case 'G': if (ninvite < MAX_FRIENDS) invite[ninvite++] = atoi(optarg); break;
        case 'J': join_invites = true; break;
        case 'M': group_msg = optarg; break;
        case 'K': need_peers = (unsigned)atoi(optarg); break;
        case 'R': repeat_secs = atoi(optarg); break;
        case 'v': verbose = true; break;
        default: usage();
        }
    }
    (void)verbose;
    struct Tox_Options *o = tox_options_new(NULL);
    uint8_t skb[TOX_SECRET_KEY_SIZE];
    common_options(o, port, sk, skb);
    Tox_Err_New en;
    Tox *t = tox_new(o, &en);
    tox_options_free(o);
    if (!t) {
        fprintf(stderr, "tox_new failed: %d\n", (int)en);
        return 2;
    }
    tox_self_set_name(t, (const uint8_t *)name, strlen(name), NULL);
    print_identity(t);
    char h[2 * TOX_ADDRESS_SIZE + 1];

    tox_callback_self_connection_status(t, on_self);
    tox_callback_friend_connection_status(t, on_friend_conn);
    tox_callback_friend_request(t, on_request);
    tox_callback_friend_message(t, on_message);
    tox_callback_group_invite(t, on_group_invite);
    tox_callback_group_self_join(t, on_self_join);
    tox_callback_group_join_fail(t, on_join_fail);
    tox_callback_group_peer_join(t, on_peer_join);
    tox_callback_group_peer_exit(t, on_peer_exit);
    tox_callback_group_peer_name(t, on_peer_name);
    tox_callback_group_message(t, on_group_message);

    for (int i = 0; i < nboot; i++) {
        char spec[256];
        snprintf(spec, sizeof spec, "%s", boot[i]);
        uint8_t key[TOX_PUBLIC_KEY_SIZE];
        uint16_t p = node_spec(spec, key);
        tox_bootstrap(t, spec, p, key, NULL);
    }
    for (int i = 0; i < nfriends; i++) {
        uint8_t pk[TOX_PUBLIC_KEY_SIZE];
        if (unhex(friends[i], pk, sizeof pk) != 0) usage();
        tox_friend_add_norequest(t, pk, NULL);
    }
    if (req) {
        uint8_t id[TOX_ADDRESS_SIZE];
        if (unhex(req, id, sizeof id) != 0) usage();
        const char *m = "toxbot_ngc says hi";
        tox_friend_add(t, id, (const uint8_t *)m, strlen(m), NULL);
    }
    if (group_name) {
        Tox_Err_Group_New e;
        uint32_t g = tox_group_new(t, TOX_GROUP_PRIVACY_STATE_PRIVATE, (const uint8_t *)group_name, strlen(group_name),
                                   (const uint8_t *)name, strlen(name), &e);
        if (e != TOX_ERR_GROUP_NEW_OK) {
            fprintf(stderr, "tox_group_new failed: %d\n", (int)e);
            return 2;
        }
        uint8_t cid[TOX_GROUP_CHAT_ID_SIZE];
        tox_group_get_chat_id(t, g, cid, NULL);
        hex(cid, sizeof cid, h);
        out("GROUP_CREATED %u %s", g, h);
        in_group = true;
    }
    time_t end = time(NULL) + timeout;
    time_t next_repeat = 0;
    int repeat_n = 1;
    while (time(NULL) < end) {
        tox_iterate(t, NULL);
        if (friend_msg && !friend_msg_sent && connected[0]) {
            tox_friend_send_message(t, 0, TOX_MESSAGE_TYPE_NORMAL, (const uint8_t *)friend_msg, strlen(friend_msg), NULL);
            friend_msg_sent = true;
        }
        for (int i = 0; i < ninvite; i++) {
            int f = invite[i];
            if (f >= 0 && f < MAX_FRIENDS && connected[f] && in_group && !invited[f]) {
                Tox_Err_Group_Invite_Friend e;
                if (tox_group_invite_friend(t, 0, (uint32_t)f, &e)) {
                    invited[f] = true;
                    out("GROUP_INVITED %d", f);
                }
            }
        }
        if (group_msg && !group_msg_sent && in_group && (unsigned)npeers + 1 >= need_peers) {
            Tox_Err_Group_Send_Message e;
            tox_group_send_message(t, 0, TOX_MESSAGE_TYPE_NORMAL, (const uint8_t *)group_msg, strlen(group_msg), &e);
            if (e == TOX_ERR_GROUP_SEND_MESSAGE_OK) {
                group_msg_sent = true;
                out("GROUP_SENT 0 '%s'", group_msg);
                next_repeat = time(NULL) + repeat_secs;
            }
        }
        if (group_msg_sent && repeat_secs > 0 && time(NULL) >= next_repeat) {
            char m[TOX_MAX_MESSAGE_LENGTH];
            int n = snprintf(m, sizeof m, "%s #%d", group_msg, ++repeat_n);
            Tox_Err_Group_Send_Message e;
            tox_group_send_message(t, 0, TOX_MESSAGE_TYPE_NORMAL, (const uint8_t *)m, (size_t)n, &e);
            out("GROUP_SENT 0 '%s' %d", m, (int)e);
            next_repeat = time(NULL) + repeat_secs;
        }
        usleep(tox_iteration_interval(t) * 1000);
    }
    out("TIMEOUT");
    tox_kill(t);
    return 0;
}
