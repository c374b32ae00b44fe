# mailtrigger's container image: a static binary (no cgo) on Alpine, run as a
# non-root user, the data directory a volume at /data.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t mailtrigger .
#   docker run -d -p 127.0.0.1:8080:8080 -v mailtrigger-data:/data mailtrigger
#   docker logs <container>          # the first admin password is printed once
#
# The healthcheck asks /readyz on port 8080: if you change MAILTRIGGER_LISTEN,
# change it too. See docs/operations.md.

FROM golang:1.26-alpine AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X mailtrigger/internal/cli.Version=${VERSION}" \
	-o /out/mailtrigger ./cmd/mailtrigger

FROM alpine:3.22
# ca-certificates: mail servers, token endpoints and webhooks over TLS.
# wget (busybox) runs the healthcheck.
RUN apk add --no-cache ca-certificates tzdata \
	&& adduser -D -H -u 10001 -s /sbin/nologin mailtrigger \
	&& mkdir -p /data && chown mailtrigger:mailtrigger /data && chmod 0700 /data
COPY --from=build /out/mailtrigger /usr/local/bin/mailtrigger
USER 10001:10001
ENV MAILTRIGGER_DATA_DIR=/data \
	MAILTRIGGER_LISTEN=0.0.0.0:8080
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
	CMD wget -q -O /dev/null http://127.0.0.1:8080/readyz || exit 1
ENTRYPOINT ["mailtrigger"]
CMD ["serve"]
