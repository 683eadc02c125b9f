-- wrk script for benches/soak.sh: each connection is one HLS viewer of the stream named in
-- the URL (its media playlist). A viewer polls the playlist about once a second and fetches
-- every new segment once. wrk's Lua state is per thread, not per connection, so a thread
-- queues each new segment once for every connection it runs (the first script argument).
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  per_thread = tonumber(args[1]) or 1
  playlist = wrk.path
  base = playlist:match("^(.*/)")
  queue, qh, qt = {}, 1, 0
  seen = {}
  n_playlists, n_segments, n_bad, bytes = 0, 0, 0, 0
end

function request()
  if qh <= qt then
    local path = queue[qh]
    queue[qh] = nil
    qh = qh + 1
    return wrk.format("GET", path)
  end
  return wrk.format("GET", playlist)
end

-- A connection with nothing to fetch waits a second before polling the playlist again.
function delay()
  if qh <= qt then return 0 end
  return 1000
end

function response(status, headers, body)
  if status ~= 200 then
    n_bad = n_bad + 1
    return
  end
  if body:sub(1, 7) == "#EXTM3U" then
    n_playlists = n_playlists + 1
    local newest = nil
    for line in body:gmatch("[^\r\n]+") do
      if line:sub(1, 1) ~= "#" then newest = line end
    end
    if newest and not seen[newest] then
      seen[newest] = true
      for _ = 1, per_thread do
        qt = qt + 1
        queue[qt] = base .. newest
      end
    end
  else
    n_segments = n_segments + 1
    bytes = bytes + #body
  end
end

function done(summary, latency, requests)
  local pl, seg, bad, b = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    pl = pl + t:get("n_playlists")
    seg = seg + t:get("n_segments")
    bad = bad + t:get("n_bad")
    b = b + t:get("bytes")
  end
  io.write(string.format("VIEWERS playlists=%d segments=%d non200=%d errors=%d MB=%.0f p99_ms=%.1f\n",
    pl, seg, bad, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    b / 1e6, latency:percentile(99) / 1000))
end
