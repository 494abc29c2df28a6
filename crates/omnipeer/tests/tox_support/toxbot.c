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
 *   -S PATH            send the file PATH to friend 0 once connected (again after each
 *                      reconnection until the friend has it all; file id = tox_hash of
 *                      "name:size", so a restarted bot offers the same id)
 *   -R DIR             accept files into DIR: DIR/<file id hex>.part while arriving
 *                      (a later offer of the same id resumes from its length with a
 *                      seek), renamed to DIR/<name> when complete
 *   -q                 exit 0 once the -S file was sent or a -R file completed
 *   -W FILE            write tox_get_savedata to FILE once set up (after -F/-f), print
 *                      SAVED and exit 0; encrypted with tox_pass_encrypt under -P
 *   -L FILE            start from the save in FILE (decrypted with -P if encrypted)
 *   -P PASS            passphrase for -W / -L
 *   -n NAME            set our name
 *   -U                 UDP off (udp_enabled = false): TCP relays only
 *   -T HOST:PORT:KEY   TCP relay (tox_add_tcp_relay; KEY = the relay's key); repeatable
 * Without -f/-m the bot auto-accepts friend requests and answers every message with
 * "echo: <msg>".
 * Conferences (c-toxcore 0.2.18's tox_conference_* group chats):
 *   -G N               once friend N is connected, invite it to our conference (created
 *                      on the first -G); repeatable
 *   -J                 join every conference we are invited to
 *   -M TEXT            send TEXT to conference 0 once it has -K peers (us included)
 *   -K N               peers to wait for before -M (default 2)
 *   -E                 echo every conference line from someone else as "echo: <line>"
 *                      (lines starting with "echo: " are not echoed)
 *
 * Output (stdout, one line each, flushed):
 *   TOXID <76 hex>            DHTKEY <64 hex>             PORT <udp port>
 *   FRIENDS <count>           (friends restored from -L)
 *   BOOTSTRAP <host:port> ok|fail          RELAY <host:port> ok|fail
 *   SELF CONNECTION <0|1|2>   (0 none, 1 TCP, 2 UDP)
 *   FRIEND_REQUEST <pk hex> '<message>'
 *   FRIEND_ADDED <n> <pk hex>
 *   FRIEND <n> CONNECTION <0|1|2>
 *   SENT <n> <message id> '<text>'
 *   MESSAGE <n> '<text>'
 *   RECEIPT <n> <message id>
 *   FILE_OFFERED <file>       FILE_SEEK <pos> (the friend resumes)   FILE_SENT <bytes>
 *   FILE_RECV <file> <kind> <size> '<name>'   FILE_RESUME <pos>   FILE_DONE <size> <path>
 *   FILE_PROGRESS <bytes>     (every 4 MiB, either direction)
 *   CONFERENCE_INVITE <friend>            CONFERENCE_JOINED <conference>
 *   CONFERENCE_CREATED <conference>       CONFERENCE_INVITED <friend>
 *   CONFERENCE_CONNECTED <conference>     CONFERENCE_SENT <conference> '<text>'
 *   CONFERENCE_PEERS <conference> <count> '<name>'...   (on every list or name change)
 *   CONFERENCE_MESSAGE <conference> '<peer name>' '<text>'   (lines from others only)
 *   CONFERENCE_TITLE <conference> '<title>'
 *   DONE                      (all echoes back, with -x)
 *   TIMEOUT
 * Exit codes: 0 success / normal end, 1 timeout with -x, 2 usage or setup error.
 */
#define _FILE_OFFSET_BITS 64
#define _DEFAULT_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>
#include <tox/tox.h>
#include <tox/toxencryptsave.h>
#include "toxbot_common.h"

#define MAX_BOOT 16
#define MAX_FRIENDS 16

static const char *message = NULL;
static int count = 1;
static int sent = 0;
static int echoed = 0;
static bool want_exit = false;
static bool done = false;
static const char *send_path = NULL;
static uint64_t send_size = 0;
static FILE *send_file = NULL;
static bool file_sent = false;
static bool file_offered = false;
static uint32_t send_number = 0;
static const char *recv_dir = NULL;
static bool exit_on_file = false;
static uint64_t progress_mark = 0;
#define FILES 256
static FILE *recv_files[FILES];
static char recv_names[FILES][300];
static char recv_parts[FILES][600];
static uint64_t recv_size[FILES];

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

static void progress(uint64_t bytes) {
    if (bytes >= progress_mark + (4u << 20)) {
        progress_mark = bytes - bytes % (4u << 20);
        printf("FILE_PROGRESS %llu\n", (unsigned long long)bytes);
    }
}

static void offer_file(Tox *t, uint32_t f) {
    if (!send_path || file_sent || file_offered) return;
    const char *name = strrchr(send_path, '/');
    name = name ? name + 1 : send_path;
    char idsrc[512];
    int n = snprintf(idsrc, sizeof idsrc, "%s:%llu", name, (unsigned long long)send_size);
    uint8_t id[TOX_FILE_ID_LENGTH];
    tox_hash(id, (const uint8_t *)idsrc, (size_t)n);
    Tox_Err_File_Send err;
    uint32_t num = tox_file_send(t, f, TOX_FILE_KIND_DATA, send_size, id, (const uint8_t *)name, strlen(name), &err);
    if (err != TOX_ERR_FILE_SEND_OK) { fprintf(stderr, "tox_file_send: %d\n", (int)err); return; }
    send_number = num;
    file_offered = true;
    progress_mark = 0;
    printf("FILE_OFFERED %u\n", num);
}

static void on_friend_conn(Tox *t, uint32_t f, Tox_Connection c, void *ud) {
    (void)ud;
    printf("FRIEND %u CONNECTION %d\n", f, (int)c);
    if (c != TOX_CONNECTION_NONE) {
        send_next(t, f);
        offer_file(t, f);
    } else {
        file_offered = false; /* c-toxcore dropped the transfer: offer again when back */
    }
}

static void on_chunk_request(Tox *t, uint32_t f, uint32_t file, uint64_t pos, size_t len, void *ud) {
    (void)ud;
    if (file != send_number || !send_file) return;
    if (len == 0) {
        printf("FILE_SENT %llu\n", (unsigned long long)send_size);
        file_sent = true;
        if (exit_on_file) done = true;
        return;
    }
    static uint8_t buf[65536];
    if (len > sizeof buf) len = sizeof buf;
    if (fseeko(send_file, (off_t)pos, SEEK_SET) != 0 || fread(buf, 1, len, send_file) != len) {
        fprintf(stderr, "read failed at %llu\n", (unsigned long long)pos);
        return;
    }
    Tox_Err_File_Send_Chunk err;
    tox_file_send_chunk(t, f, file, pos, buf, len, &err);
    if (err != TOX_ERR_FILE_SEND_CHUNK_OK) fprintf(stderr, "send_chunk at %llu: %d\n", (unsigned long long)pos, (int)err);
    progress(pos + len);
}

static void on_file_control(Tox *t, uint32_t f, uint32_t file, Tox_File_Control c, void *ud) {
    (void)t; (void)f; (void)ud;
    printf("FILE_CONTROL %u %d\n", file, (int)c);
}

static int slot_of(uint32_t file) { return (int)((file >> 16) - 1) & (FILES - 1); }

static void on_file_recv(Tox *t, uint32_t f, uint32_t file, uint32_t kind, uint64_t size, const uint8_t *name,
                         size_t len, void *ud) {
    (void)ud;
    printf("FILE_RECV %u %u %llu '%.*s'\n", file, kind, (unsigned long long)size, (int)len, (const char *)name);
    if (!recv_dir) { tox_file_control(t, f, file, TOX_FILE_CONTROL_CANCEL, NULL); return; }
    uint8_t id[TOX_FILE_ID_LENGTH];
    char idh[2 * TOX_FILE_ID_LENGTH + 1];
    tox_file_get_file_id(t, f, file, id, NULL);
    hex(id, sizeof id, idh);
    int s = slot_of(file);
    snprintf(recv_parts[s], sizeof recv_parts[s], "%s/%s.part", recv_dir, idh);
    snprintf(recv_names[s], sizeof recv_names[s], "%.*s", (int)len, (const char *)name);
    for (char *c = recv_names[s]; *c; c++) if (*c == '/') *c = '_';
    if (recv_names[s][0] == 0 || recv_names[s][0] == '.') snprintf(recv_names[s], sizeof recv_names[s], "file-%s", idh);
    recv_size[s] = size;
    FILE *fp = fopen(recv_parts[s], "r+b");
    uint64_t have = 0;
    if (fp) {
        fseeko(fp, 0, SEEK_END);
        have = (uint64_t)ftello(fp);
        if (have >= size) have = 0;
        if (ftruncate(fileno(fp), (off_t)have) != 0) have = 0;
        fseeko(fp, (off_t)have, SEEK_SET);
    } else {
        fp = fopen(recv_parts[s], "w+b");
    }
    if (!fp) { tox_file_control(t, f, file, TOX_FILE_CONTROL_CANCEL, NULL); return; }
    recv_files[s] = fp;
    progress_mark = 0;
    if (have > 0) {
        Tox_Err_File_Seek es;
        tox_file_seek(t, f, file, have, &es);
        if (es == TOX_ERR_FILE_SEEK_OK) printf("FILE_RESUME %llu\n", (unsigned long long)have);
        else { fseeko(fp, 0, SEEK_SET); if (ftruncate(fileno(fp), 0) != 0) return; }
    }
    tox_file_control(t, f, file, TOX_FILE_CONTROL_RESUME, NULL);
}

static void on_file_chunk(Tox *t, uint32_t f, uint32_t file, uint64_t pos, const uint8_t *data, size_t len,
                          void *ud) {
    (void)t; (void)f; (void)ud;
    int s = slot_of(file);
    FILE *fp = recv_files[s];
    if (!fp) return;
    if (len == 0) {
        fclose(fp);
        recv_files[s] = NULL;
        char dest[700];
        snprintf(dest, sizeof dest, "%s/%s", recv_dir, recv_names[s]);
        if (rename(recv_parts[s], dest) != 0) { perror("rename"); return; }
        printf("FILE_DONE %llu %s\n", (unsigned long long)recv_size[s], dest);
        if (exit_on_file) done = true;
        return;
    }
    if (fseeko(fp, (off_t)pos, SEEK_SET) != 0 || fwrite(data, 1, len, fp) != len) {
        fprintf(stderr, "write failed at %llu\n", (unsigned long long)pos);
        return;
    }
    progress(pos + len);
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

/* ---- conferences (-G -J -M -K -E) ---- */
static uint32_t conf_invite[MAX_FRIENDS];
static bool conf_invited[MAX_FRIENDS];
static int nconf_invite = 0;
static bool conf_join = false;
static const char *conf_message = NULL;
static uint32_t conf_wait_peers = 2;
static bool conf_sent = false;
static bool conf_echo = false;
static bool conf_have = false;
static uint32_t conf_number = 0;

static void conf_print_peers(Tox *t, uint32_t c) {
    Tox_Err_Conference_Peer_Query e;
    uint32_t n = tox_conference_peer_count(t, c, &e);
    if (e != TOX_ERR_CONFERENCE_PEER_QUERY_OK) return;
    char line[16384];
    int at = snprintf(line, sizeof line, "CONFERENCE_PEERS %u %u", c, n);
    for (uint32_t i = 0; i < n && at < (int)sizeof line - 300; i++) {
        uint8_t name[TOX_MAX_NAME_LENGTH];
        size_t len = tox_conference_peer_get_name_size(t, c, i, &e);
        if (e != TOX_ERR_CONFERENCE_PEER_QUERY_OK || len > sizeof name) len = 0;
        else tox_conference_peer_get_name(t, c, i, name, &e);
        at += snprintf(line + at, sizeof line - at, " '%.*s'", (int)len, (const char *)name);
    }
    printf("%s\n", line);
}

static void on_conf_invite(Tox *t, uint32_t f, Tox_Conference_Type type, const uint8_t *cookie, size_t len,
                           void *ud) {
    (void)ud; (void)type;
    printf("CONFERENCE_INVITE %u\n", f);
    if (!conf_join) return;
    Tox_Err_Conference_Join e;
    uint32_t c = tox_conference_join(t, f, cookie, len, &e);
    if (e == TOX_ERR_CONFERENCE_JOIN_OK) {
        printf("CONFERENCE_JOINED %u\n", c);
        conf_have = true;
        conf_number = c;
    } else {
        printf("CONFERENCE_JOIN_FAILED %d\n", (int)e);
    }
}

static void on_conf_connected(Tox *t, uint32_t c, void *ud) {
    (void)t; (void)ud;
    printf("CONFERENCE_CONNECTED %u\n", c);
}

static void on_conf_message(Tox *t, uint32_t c, uint32_t peer, Tox_Message_Type type, const uint8_t *msg,
                            size_t len, void *ud) {
    (void)ud; (void)type;
    Tox_Err_Conference_Peer_Query e;
    /* c-toxcore hands us our own lines back too: not printed, not echoed */
    if (tox_conference_peer_number_is_ours(t, c, peer, &e)) return;
    uint8_t name[TOX_MAX_NAME_LENGTH];
    size_t nlen = tox_conference_peer_get_name_size(t, c, peer, &e);
    if (e != TOX_ERR_CONFERENCE_PEER_QUERY_OK || nlen > sizeof name) nlen = 0;
    else tox_conference_peer_get_name(t, c, peer, name, &e);
    printf("CONFERENCE_MESSAGE %u '%.*s' '%.*s'\n", c, (int)nlen, (const char *)name, (int)len, (const char *)msg);
    if (conf_echo && !(len >= 6 && memcmp(msg, "echo: ", 6) == 0)) {
        char out[TOX_MAX_MESSAGE_LENGTH];
        int n = snprintf(out, sizeof out, "echo: %.*s", (int)len, (const char *)msg);
        if (n < 0) return;
        if ((size_t)n >= sizeof out) n = sizeof out - 1;
        Tox_Err_Conference_Send_Message es;
        tox_conference_send_message(t, c, TOX_MESSAGE_TYPE_NORMAL, (const uint8_t *)out, (size_t)n, &es);
    }
}

static void on_conf_peer_name(Tox *t, uint32_t c, uint32_t peer, const uint8_t *name, size_t len, void *ud) {
    (void)peer; (void)name; (void)len; (void)ud;
    conf_print_peers(t, c);
}

static void on_conf_peer_list(Tox *t, uint32_t c, void *ud) {
    (void)ud;
    conf_print_peers(t, c);
}

static void on_conf_title(Tox *t, uint32_t c, uint32_t peer, const uint8_t *title, size_t len, void *ud) {
    (void)t; (void)peer; (void)ud;
    printf("CONFERENCE_TITLE %u '%.*s'\n", c, (int)len, (const char *)title);
}

static void conf_setup(Tox *t) {
    tox_callback_conference_title(t, on_conf_title);
    tox_callback_conference_invite(t, on_conf_invite);
    tox_callback_conference_connected(t, on_conf_connected);
    tox_callback_conference_message(t, on_conf_message);
    tox_callback_conference_peer_name(t, on_conf_peer_name);
    tox_callback_conference_peer_list_changed(t, on_conf_peer_list);
}

/* called every iteration */
static void conf_step(Tox *t) {
    for (int i = 0; i < nconf_invite; i++) {
        if (conf_invited[i] || tox_friend_get_connection_status(t, conf_invite[i], NULL) == TOX_CONNECTION_NONE)
            continue;
        if (!conf_have) {
            Tox_Err_Conference_New en;
            conf_number = tox_conference_new(t, &en);
            if (en != TOX_ERR_CONFERENCE_NEW_OK) { printf("CONFERENCE_NEW_FAILED %d\n", (int)en); return; }
            conf_have = true;
            printf("CONFERENCE_CREATED %u\n", conf_number);
        }
        Tox_Err_Conference_Invite ei;
        if (tox_conference_invite(t, conf_invite[i], conf_number, &ei)) {
            conf_invited[i] = true;
            printf("CONFERENCE_INVITED %u\n", conf_invite[i]);
        }
    }
    if (conf_message && !conf_sent && conf_have) {
        Tox_Err_Conference_Peer_Query e;
        uint32_t n = tox_conference_peer_count(t, conf_number, &e);
        if (e == TOX_ERR_CONFERENCE_PEER_QUERY_OK && n >= conf_wait_peers) {
            Tox_Err_Conference_Send_Message es;
            if (tox_conference_send_message(t, conf_number, TOX_MESSAGE_TYPE_NORMAL, (const uint8_t *)conf_message,
                                            strlen(conf_message), &es)) {
                conf_sent = true;
                printf("CONFERENCE_SENT %u '%s'\n", conf_number, conf_message);
            }
        }
    }
}

static void usage(void) {
    fprintf(stderr, "usage: toxbot [-p PORT] [-b HOST:PORT:KEY]... [-s SK] [-F PK]... "
                    "[-f TOXID [-r TEXT]] [-m TEXT [-c N]] [-x] [-t SECS] [-v] [-S PATH] [-R DIR] [-q]\n");
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
    const char *save_out = NULL, *load_in = NULL, *pass = NULL, *name = NULL;
    bool udp = true;
    int nrelay = 0;
    char *relay[MAX_BOOT];
    while ((opt = getopt(argc, argv, "p:b:s:F:f:r:m:c:xt:vS:R:qW:L:P:n:UT:" "G:JM:K:E")) != -1) {
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
        case 'S': send_path = optarg; break;
        case 'R': recv_dir = optarg; break;
        case 'q': exit_on_file = true; break;
        case 'W': save_out = optarg; break;
        case 'L': load_in = optarg; break;
        case 'P': pass = optarg; break;
        case 'n': name = optarg; break;
        case 'U': udp = false; break;
        case 'T': if (nrelay == MAX_BOOT) usage(); relay[nrelay++] = optarg; break;
        case 'G': if (nconf_invite == MAX_FRIENDS) usage(); conf_invite[nconf_invite++] = (uint32_t)atoi(optarg); break;
        case 'J': conf_join = true; break;
        case 'M': conf_message = optarg; break;
        case 'K': conf_wait_peers = (uint32_t)atoi(optarg); break;
        case 'E': conf_echo = true; break;
        default: usage();
        }
    }

    if (send_path) {
        send_file = fopen(send_path, "rb");
        if (!send_file) { perror(send_path); return 2; }
        fseeko(send_file, 0, SEEK_END);
        send_size = (uint64_t)ftello(send_file);
    }
    struct Tox_Options *o = tox_options_new(NULL);
    if (!o) return 2;
    tox_options_set_udp_enabled(o, udp);
    uint8_t skb[TOX_SECRET_KEY_SIZE];
    common_options(o, port, sk, skb);
    uint8_t *loaded = NULL;
    if (load_in) {
        FILE *lf = fopen(load_in, "rb");
        if (!lf) { perror(load_in); return 2; }
        static uint8_t buf[1 << 24];
        size_t n = fread(buf, 1, sizeof buf, lf);
        fclose(lf);
        size_t len = n;
        loaded = buf;
        if (tox_is_data_encrypted(buf)) {
            if (!pass || n <= TOX_PASS_ENCRYPTION_EXTRA_LENGTH) { fprintf(stderr, "encrypted save: need -P\n"); return 2; }
            len = n - TOX_PASS_ENCRYPTION_EXTRA_LENGTH;
            loaded = malloc(len);
            Tox_Err_Decryption ed;
            if (!tox_pass_decrypt(buf, n, (const uint8_t *)pass, strlen(pass), loaded, &ed)) {
                fprintf(stderr, "tox_pass_decrypt failed: %d\n", (int)ed);
                return 2;
            }
        }
        tox_options_set_savedata_type(o, TOX_SAVEDATA_TYPE_TOX_SAVE);
        tox_options_set_savedata_data(o, loaded, len);
    }
    if (verbose) tox_options_set_log_callback(o, on_log);
    Tox_Err_New enew;
    Tox *t = tox_new(o, &enew);
    tox_options_free(o);
    if (!t) {
        fprintf(stderr, "tox_new failed: %d\n", (int)enew);
        return 2;
    }

    if (name) tox_self_set_name(t, (const uint8_t *)name, strlen(name), NULL);
    if (load_in) printf("FRIENDS %u\n", (unsigned)tox_self_get_friend_list_size(t));
    print_identity(t);

    tox_callback_self_connection_status(t, on_self);
    tox_callback_friend_request(t, on_request);
    tox_callback_friend_connection_status(t, on_friend_conn);
    tox_callback_friend_message(t, on_message);
    tox_callback_friend_read_receipt(t, on_receipt);
    tox_callback_file_chunk_request(t, on_chunk_request);
    tox_callback_file_recv_control(t, on_file_control);
    tox_callback_file_recv(t, on_file_recv);
    tox_callback_file_recv_chunk(t, on_file_chunk);
    conf_setup(t);

    for (int i = 0; i < nboot; i++) {
        uint8_t key[TOX_PUBLIC_KEY_SIZE];
        uint16_t p = node_spec(boot[i], key);
        Tox_Err_Bootstrap eb;
        bool ok = tox_bootstrap(t, boot[i], p, key, &eb);
        printf("BOOTSTRAP %s:%u %s\n", boot[i], (unsigned)p, ok ? "ok" : "fail");
    }
    for (int i = 0; i < nrelay; i++) {
        uint8_t key[TOX_PUBLIC_KEY_SIZE];
        uint16_t p = node_spec(relay[i], key);
        Tox_Err_Bootstrap eb;
        bool ok = tox_add_tcp_relay(t, relay[i], p, key, &eb);
        printf("RELAY %s:%u %s\n", relay[i], (unsigned)p, ok ? "ok" : "fail");
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

    if (save_out) {
        size_t n = tox_get_savedata_size(t);
        uint8_t *d = malloc(n);
        tox_get_savedata(t, d);
        uint8_t *w = d;
        size_t wn = n;
        if (pass) {
            wn = n + TOX_PASS_ENCRYPTION_EXTRA_LENGTH;
            w = malloc(wn);
            Tox_Err_Encryption ee;
            if (!tox_pass_encrypt(d, n, (const uint8_t *)pass, strlen(pass), w, &ee)) {
                fprintf(stderr, "tox_pass_encrypt failed: %d\n", (int)ee);
                return 2;
            }
        }
        FILE *sf = fopen(save_out, "wb");
        if (!sf || fwrite(w, 1, wn, sf) != wn || fclose(sf) != 0) { perror(save_out); return 2; }
        printf("SAVED %zu\n", wn);
        tox_kill(t);
        return 0;
    }
    double end = now_s() + timeout;
    while (!done) {
        tox_iterate(t, NULL);
        conf_step(t);
        if (message && sent < count && tox_friend_get_connection_status(t, 0, NULL) != TOX_CONNECTION_NONE)
            send_next(t, 0);
        if (send_path && !file_offered && !file_sent && tox_friend_get_connection_status(t, 0, NULL) != TOX_CONNECTION_NONE)
            offer_file(t, 0);
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
