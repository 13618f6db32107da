# The seed's "bloat" container (localhost/oomhero-bloat:dev): the test
# application with the defaults the seed's Pod needs, since that Pod passes no
# arguments: leak 8 MiB/s until the kernel kills it, handle SIGUSR1/SIGUSR2
# and log them, serve GET /healthz on :8080 for the liveness probe.
FROM localhost/oomhero-testapp:dev
ENTRYPOINT ["/testapp"]
CMD ["-mode=leak", "-rate=8", "-listen=:8080"]
