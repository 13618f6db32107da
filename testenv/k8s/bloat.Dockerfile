# The seed's "bloat" container (localhost/oomhero-bloat:dev): the test
# application with the defaults the seed's Pod needs, since that Pod passes no
# arguments: leak 8 MiB/s in 1 MiB steps (one log line each) until the kernel
# kills it, handle SIGUSR1/SIGUSR2 and log them, serve GET /healthz on :8080
# for the liveness probe.
FROM localhost/oomhero-testapp:dev
ENTRYPOINT ["/testapp"]
CMD ["-mode=leak", "-rate=8", "-chunk=1024", "-listen=:8080"]
