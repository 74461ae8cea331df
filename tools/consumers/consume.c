/* Reads predictions from a Sluice `zmq` sink and prints them as JSON lines, each window once.
 *
 * Each message holds one or more whole batches' predictions, one JSON object per line, with
 * "batch_seq" and "window_seq"; windows already printed (sent again after a reconnect or a
 * sink restart) are dropped by window_seq.
 *
 * Build:  cc -O2 -o consume tools/consumers/consume.c -lzmq
 * Usage:  consume ENDPOINT [push|pub] [WINDOWS] [CONSUMER.key SINK.pub]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* The Z85 value of `field = "..."` in a `sluice keys` file, into out (41 bytes). */
static int read_key(const char *path, const char *field, char *out) {
    FILE *file = fopen(path, "r");
    if (!file) return -1;
    char line[256];
    int found = -1;
    while (fgets(line, sizeof line, file)) {
        char name[64], value[64];
        if (sscanf(line, " %63[a-z-] = \"%63[^\"]\"", name, value) == 2 && strcmp(name, field) == 0 && strlen(value) == 40) {
            memcpy(out, value, 41);
            found = 0;
        }
    }
    fclose(file);
    return found;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s ENDPOINT [push|pub] [WINDOWS] [CONSUMER.key SINK.pub]\n", argv[0]);
        return 2;
    }
    int subscribe = argc > 2 && strcmp(argv[2], "pub") == 0;
    long wanted = argc > 3 ? strtol(argv[3], NULL, 10) : -1;
    void *context = zmq_ctx_new();
    void *socket = zmq_socket(context, subscribe ? ZMQ_SUB : ZMQ_PULL);
    if (subscribe) zmq_setsockopt(socket, ZMQ_SUBSCRIBE, "", 0);
    if (argc > 5) {
        char public_key[41], secret_key[41], server_key[41];
        if (read_key(argv[4], "public-key", public_key) || read_key(argv[4], "secret-key", secret_key)
            || read_key(argv[5], "public-key", server_key)) {
            fprintf(stderr, "consume: cannot read the keys in %s and %s\n", argv[4], argv[5]);
            return 2;
        }
        zmq_setsockopt(socket, ZMQ_CURVE_SERVERKEY, server_key, 40);
        zmq_setsockopt(socket, ZMQ_CURVE_PUBLICKEY, public_key, 40);
        zmq_setsockopt(socket, ZMQ_CURVE_SECRETKEY, secret_key, 40);
    }
    int idle_ms = 30000;
    zmq_setsockopt(socket, ZMQ_RCVTIMEO, &idle_ms, sizeof idle_ms);
    if (zmq_connect(socket, argv[1]) != 0) {
        fprintf(stderr, "consume: cannot connect to %s: %s\n", argv[1], zmq_strerror(zmq_errno()));
        return 2;
    }
    unsigned long long next_window = 0;
    long printed = 0;
    while (wanted < 0 || printed < wanted) {
        zmq_msg_t message;
        zmq_msg_init(&message);
        if (zmq_msg_recv(&message, socket, 0) < 0) {
            fprintf(stderr, "consume: no message for %d s; stopping after %ld windows\n", idle_ms / 1000, printed);
            zmq_msg_close(&message);
            break;
        }
        const char *data = zmq_msg_data(&message);
        size_t size = zmq_msg_size(&message), start = 0;
        while (start < size) {
            const char *newline = memchr(data + start, '\n', size - start);
            size_t end = newline ? (size_t)(newline - data) : size;
            const char *field = "\"window_seq\":";
            /* Search within this line only: a copy, terminated. */
            size_t length = end - start;
            char *line = malloc(length + 1);
            if (!line) return 1;
            memcpy(line, data + start, length);
            line[length] = 0;
            const char *found = strstr(line, field);
            unsigned long long window = found ? strtoull(found + strlen(field), NULL, 10) : 0;
            if (found && window >= next_window) {
                next_window = window + 1;
                puts(line);
                printed++;
            }
            free(line);
            start = end + 1;
        }
        zmq_msg_close(&message);
    }
    fflush(stdout);
    zmq_close(socket);
    zmq_ctx_term(context);
    return 0;
}
