# The three programs in one image, built from Debian packages only.
#
#   build     compiles with CMake; packages: deps/debian-packages.txt, tag build
#   runtime   the programs + their shared libraries (tag runtime), non-root
#   postgres  PostgreSQL 15 from Debian (tag postgres) for the compose
#             `postgres` profile
#   prometheus  Prometheus from Debian (tag metrics) for the compose
#             `metrics` profile, with compose/prometheus.yml
#
# Every stage installs through scripts/deps.sh from the one package list;
# tests/config/check_config.py checks this file against that list.
ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${DEBIAN_IMAGE} AS build
WORKDIR /src
COPY deps/debian-packages.txt deps/debian-packages.txt
COPY scripts/deps.sh scripts/deps.sh
RUN scripts/deps.sh build && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    && cmake --build /build -j"$(nproc)" --target \
         device-assignment-server device-assignment-gateway device-assignment \
    && install -d /out \
    && for p in device-assignment-server device-assignment-gateway device-assignment; do \
         install -m 0755 "$(find /build -type f -name "$p" -perm -u+x -print -quit)" "/out/$p"; \
       done

FROM ${DEBIAN_IMAGE} AS runtime
COPY deps/debian-packages.txt /tmp/das-deps/deps/debian-packages.txt
COPY scripts/deps.sh /tmp/das-deps/scripts/deps.sh
RUN /tmp/das-deps/scripts/deps.sh runtime \
    && rm -rf /var/lib/apt/lists/* /tmp/das-deps \
    && groupadd --system --gid 10001 das \
    && useradd --system --uid 10001 --gid das --no-create-home \
         --home-dir /var/lib/device-assignment --shell /usr/sbin/nologin das \
    && install -d -o das -g das -m 0750 /var/lib/device-assignment
COPY --from=build /out/device-assignment-server /usr/local/bin/device-assignment-server
COPY --from=build /out/device-assignment-gateway /usr/local/bin/device-assignment-gateway
COPY --from=build /out/device-assignment /usr/local/bin/device-assignment
# The demo data, so a compose-only user can import it from inside the stack.
COPY examples/directory.json /usr/share/device-assignment/examples/directory.json
USER das
WORKDIR /var/lib/device-assignment
EXPOSE 50051 8080
CMD ["device-assignment-server", "--help"]

FROM ${DEBIAN_IMAGE} AS postgres
COPY deps/debian-packages.txt /tmp/das-deps/deps/debian-packages.txt
COPY scripts/deps.sh /tmp/das-deps/scripts/deps.sh
# Debian's package creates (and may start) a default 15/main cluster; this
# image initialises its own in the data volume, so that one is dropped.
RUN /tmp/das-deps/scripts/deps.sh postgres \
    && pg_dropcluster --stop 15 main \
    && rm -rf /var/lib/apt/lists/* /tmp/das-deps /var/lib/postgresql/15 \
    && install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data
COPY scripts/docker-postgres.sh /usr/local/bin/docker-postgres.sh
USER postgres
ENV PGDATA=/var/lib/postgresql/data
# SIGINT is PostgreSQL's "fast" shutdown; the default SIGTERM waits for
# every client to leave.
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["/usr/local/bin/docker-postgres.sh"]

FROM ${DEBIAN_IMAGE} AS prometheus
COPY deps/debian-packages.txt /tmp/das-deps/deps/debian-packages.txt
COPY scripts/deps.sh /tmp/das-deps/scripts/deps.sh
RUN /tmp/das-deps/scripts/deps.sh metrics \
    && rm -rf /var/lib/apt/lists/* /tmp/das-deps \
    && install -d -o prometheus -g prometheus -m 0750 /var/lib/prometheus/data
COPY compose/prometheus.yml /etc/prometheus/device-assignment.yml
USER prometheus
EXPOSE 9090
CMD ["prometheus", "--config.file=/etc/prometheus/device-assignment.yml", \
     "--storage.tsdb.path=/var/lib/prometheus/data", \
     "--web.listen-address=0.0.0.0:9090"]
