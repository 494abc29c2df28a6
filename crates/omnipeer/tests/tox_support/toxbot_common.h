/* toxbot_common.h: what the two c-toxcore test bots share (toxbot.c against the system's
 * c-toxcore 0.2.18, toxbot_ngc.c against 0.2.20): hex keys, the Tox options every test
 * bot runs with, the HOST:PORT:KEY node specs of -b/-T, and the identity lines printed at
 * start. Only the public <tox/tox.h> API. Included by each bot's single source file (the
 * compiler finds it beside the source), so each still builds with one `cc` line.
 * Each bot defines `usage()` (it exits). */
#ifndef TOXBOT_COMMON_H
#define TOXBOT_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <stdint.h>
#include <tox/tox.h>

static void usage(void);

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

/* The options of every test bot: IPv4 only, no LAN discovery, no TCP server, UDP on
 * `port` (0 = any), and the fixed identity `sk` (64 hex, kept in `skb`) when given. */
static void common_options(struct Tox_Options *o, int port, const char *sk, uint8_t skb[TOX_SECRET_KEY_SIZE]) {
    tox_options_set_ipv6_enabled(o, false);
    tox_options_set_local_discovery_enabled(o, false);
    tox_options_set_tcp_port(o, 0);
    tox_options_set_start_port(o, (uint16_t)port);
    tox_options_set_end_port(o, (uint16_t)port);
    if (sk) {
        if (unhex(sk, skb, TOX_SECRET_KEY_SIZE) != 0) usage();
        tox_options_set_savedata_type(o, TOX_SAVEDATA_TYPE_SECRET_KEY);
        tox_options_set_savedata_data(o, skb, TOX_SECRET_KEY_SIZE);
    }
}

/* Splits `spec` (HOST:PORT:KEY, cut in place) into the host (`spec` itself), the port and
 * the key; a spec that is not one is a usage error. */
static uint16_t node_spec(char *spec, uint8_t key[TOX_PUBLIC_KEY_SIZE]) {
    char *k = strrchr(spec, ':');
    if (!k) usage();
    *k++ = 0;
    char *p = strrchr(spec, ':');
    if (!p) usage();
    *p++ = 0;
    if (unhex(k, key, TOX_PUBLIC_KEY_SIZE) != 0) usage();
    return (uint16_t)atoi(p);
}

/* TOXID <76 hex>, DHTKEY <64 hex> and PORT <udp port>, the lines the tests wait for. */
static void print_identity(const Tox *t) {
    uint8_t addr[TOX_ADDRESS_SIZE], dht[TOX_PUBLIC_KEY_SIZE];
    char h[2 * TOX_ADDRESS_SIZE + 1];
    tox_self_get_address(t, addr);
    hex(addr, sizeof addr, h);
    printf("TOXID %s\n", h);
    tox_self_get_dht_id(t, dht);
    hex(dht, sizeof dht, h);
    printf("DHTKEY %s\n", h);
    printf("PORT %u\n", (unsigned)tox_self_get_udp_port(t, NULL));
    fflush(stdout);
}

#endif
