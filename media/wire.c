/* One frame's RTP packets for one subscriber: header, SRTP protection and the send, in one call.
 *
 * Why native: forwarding is the server's whole job, and at twelve participants it runs some four thousand times
 * a second (a frame to each of eleven subscribers, thirty times a second, for each publisher). In Python the
 * per-packet header packing, the call into libsrtp and the socket call cost about as much as the crypto itself;
 * here they cost nothing next to it. Everything else (what to send, to whom, when) stays in media/forwarding.py.
 *
 * libsrtp is not linked: the caller hands over pylibsrtp's own srtp_protect and the session it made, so there is
 * one libsrtp in the process and one SRTP context per DTLS transport, as aiortc expects.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103 /* linux/udp.h, Linux 4.18 */
#endif

typedef int (*rcp_protect_fn)(void *ctx, void *rtp, int *len);

/* RTP packets for ``payload`` cut into ``segment``-byte pieces (the last may be shorter), protected back to back
 * into ``out``. ``head`` is the packet header template: the RFC 3550 fixed header (its sequence number and
 * timestamp are overwritten here, the marker bit is set on the last packet if ``marker``, else cleared) and the
 * RFC 8285 extension block, with
 * the 3-byte abs-send-time value at ``abs_pos`` (negative: none). Returns the number of packets, or -1 when the
 * buffer is too small or libsrtp refused a packet. ``*first_len`` is the first protected packet's size, ``*total``
 * the bytes written. */
static int rcp_protect_frame(rcp_protect_fn protect, void *ctx, const unsigned char *head, int head_len, int abs_pos,
                             const unsigned char *abs_time, unsigned int seq, unsigned int ts, int marker,
                             const unsigned char *payload, int payload_len, int segment, unsigned char *out,
                             int out_size, int trailer, int *first_len, int *total) {
    if (segment <= 0) segment = payload_len > 0 ? payload_len : 1;
    int count = payload_len <= segment ? 1 : (payload_len + segment - 1) / segment;
    int pos = 0;
    for (int i = 0; i < count; i++) {
        int offset = i * segment;
        int size = payload_len - offset < segment ? payload_len - offset : segment;
        int length = head_len + size;
        if (size < 0 || pos + length + trailer > out_size) return -1;
        unsigned char *packet = out + pos;
        memcpy(packet, head, head_len);
        if (marker && i == count - 1) packet[1] |= 0x80;
        else packet[1] &= 0x7f;
        unsigned int s = (seq + i) & 0xffff;
        packet[2] = s >> 8;
        packet[3] = s & 0xff;
        packet[4] = ts >> 24;
        packet[5] = ts >> 16;
        packet[6] = ts >> 8;
        packet[7] = ts;
        if (abs_pos >= 0 && abs_pos + 3 <= head_len) memcpy(packet + abs_pos, abs_time, 3);
        memcpy(packet + head_len, payload + offset, size);
        if (protect(ctx, packet, &length) != 0) return -1;
        if (i == 0) *first_len = length;
        pos += length;
    }
    *total = pos;
    return count;
}

/* Send ``count`` packets written back to back in ``out`` (all ``first_len`` bytes but the last): one sendmsg with
 * UDP segmentation offload when ``gso`` and there are several, else one sendto each. Returns 0 or an errno: EAGAIN
 * when the socket's buffer is full (the packets are lost, as on the wire), EIO or EINVAL when the kernel or the
 * route refuses GSO (the caller sends them again one by one). */
static int rcp_send_segmented(int fd, const void *addr, int addrlen, const unsigned char *data, int length,
                              int segment) {
    struct iovec iov = {(void *)data, (size_t)length};
    char control[CMSG_SPACE(sizeof(uint16_t))];
    memset(control, 0, sizeof(control));
    struct msghdr message = {0};
    message.msg_name = (void *)addr;
    message.msg_namelen = (socklen_t)addrlen;
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof(control);
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&message);
    cmsg->cmsg_level = SOL_UDP;
    cmsg->cmsg_type = UDP_SEGMENT;
    cmsg->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t size = (uint16_t)segment;
    memcpy(CMSG_DATA(cmsg), &size, sizeof(size));
    return sendmsg(fd, &message, MSG_DONTWAIT) < 0 ? errno : 0;
}

/* Segments per sendmsg: under the kernel's limit (64 before Linux 5.5) and 64 kB per datagram. */
#define RCP_GSO_MAX_SEGMENTS 32
#define RCP_GSO_MAX_BYTES 60000

/* Send ``count`` packets written back to back in ``out`` (all ``first_len`` bytes but the last): sendmsg with UDP
 * segmentation offload (Linux ``UDP_SEGMENT``: the kernel cuts the buffer into datagrams, the subscriber receives
 * them one by one) when ``gso`` and there are several, else one sendto each. Returns 0 or an errno: EAGAIN when
 * the socket's buffer is full (the packets are lost, as on the wire), EIO or EINVAL when the kernel or the route
 * refuses GSO (the caller sends them again one by one). */
static int rcp_send(int fd, const void *addr, int addrlen, int gso, const unsigned char *out, int count,
                    int first_len, int total) {
    int pos = 0;
    int group = first_len > 0 ? RCP_GSO_MAX_BYTES / first_len : 0;
    if (group > RCP_GSO_MAX_SEGMENTS) group = RCP_GSO_MAX_SEGMENTS;
    if (count > 1 && gso && group > 1) {
        for (int i = 0; i < count; i += group) {
            int length = i + group >= count ? total - pos : group * first_len;
            int status = rcp_send_segmented(fd, addr, addrlen, out + pos, length, first_len);
            if (status != 0) return status;
            pos += length;
        }
        return 0;
    }
    for (int i = 0; i < count; i++) {
        int length = i == count - 1 ? total - pos : first_len;
        const struct sockaddr *to = (const struct sockaddr *)addr;
        if (sendto(fd, out + pos, (size_t)length, MSG_DONTWAIT, to, (socklen_t)addrlen) < 0) return errno;
        pos += length;
    }
    return 0;
}

int rcp_write_frame(rcp_protect_fn protect, void *ctx, const unsigned char *head, int head_len, int abs_pos,
                    const unsigned char *abs_time, unsigned int seq, unsigned int ts, int marker,
                    const unsigned char *payload, int payload_len, int segment, unsigned char *out, int out_size,
                    int trailer, int fd, const void *addr, int addrlen, int gso, int *lengths) {
    /* lengths[0]: first packet's size, lengths[1]: bytes written, lengths[2]: the send's errno (0: sent; -1: not
     * sent, fd < 0). */
    int count = rcp_protect_frame(protect, ctx, head, head_len, abs_pos, abs_time, seq, ts, marker, payload,
                                  payload_len, segment, out, out_size, trailer, &lengths[0], &lengths[1]);
    lengths[2] = -1;
    if (count > 0 && fd >= 0) lengths[2] = rcp_send(fd, addr, addrlen, gso, out, count, lengths[0], lengths[1]);
    return count;
}

/* The socket address of a numeric host and port (IPv4, or IPv6 with an optional %scope), for rcp_write_frame.
 * Returns its length, or 0 if ``host`` is not a numeric address. */
int rcp_socket_address(const char *host, const char *port, unsigned char *out, int out_size) {
    struct addrinfo hints = {0};
    struct addrinfo *found = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if (getaddrinfo(host, port, &hints, &found) != 0 || found == NULL) return 0;
    int length = (int)found->ai_addrlen;
    if (length > out_size) length = 0;
    else memcpy(out, found->ai_addr, (size_t)length);
    freeaddrinfo(found);
    return length;
}
