"""The Lua scripts of the Redis stream log (streams/redis.py): each decision that two replicas
could otherwise take at once is one script, so Redis takes it atomically.

Keys of one stream: `meta` (a hash: owner, has_owner, session_id, finished, lost), `alive`
(the owner's lease), `s` (the Redis stream of its events, entry ids `0-<seq>`). A `meta`
without `has_owner` is one that Redis lost (a restart without persistence) and that a late
write created again in part: it counts as gone.
"""

from __future__ import annotations


def stream_keys(prefix: str, stream_id: str) -> list[str]:
    """The KEYS every script here takes for one stream, in their order: meta, alive, s."""
    return [f"{prefix}:meta:{stream_id}", f"{prefix}:alive:{stream_id}", f"{prefix}:s:{stream_id}"]


# The owner's lease, for every stream it holds, in one call. KEYS: (meta, alive, s) per stream.
# ARGV: lease ms, max age s. The lease is renewed until Redis has the stream's terminal event
# (a stream finished here whose end is still on its way stays alive meanwhile).
# Returns per stream: 0 gone (write it again), 1 renewed or finished, 2 declared lost.
RENEW = """
local lease, max_age = ARGV[1], ARGV[2]
local out = {}
for i = 1, #KEYS / 3 do
  local meta, alive, s = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local state = redis.call('HMGET', meta, 'has_owner', 'finished', 'lost')
  if not state[1] then
    out[i] = 0
  elseif state[3] == '1' then
    out[i] = 2
  else
    if state[2] ~= '1' then
      redis.call('SET', alive, '1', 'PX', lease)
      redis.call('EXPIRE', meta, max_age)
      redis.call('EXPIRE', s, max_age)
    end
    out[i] = 1
  end
end
return out
"""

# The owner writes one stream again from its own copy, unless a reader declared it lost.
# KEYS: meta, alive, s. ARGV: owner, has_owner, session_id, finished (0/1), lease ms,
# expiry s, seq of the first event, the stream's language, then type and JSON of each event
# in order.
# Returns 1 written, 0 declared lost (left as it is).
REWRITE = """
local meta, alive, s = KEYS[1], KEYS[2], KEYS[3]
if redis.call('HGET', meta, 'lost') == '1' then
  return 0
end
redis.call('DEL', s, meta)
local seq = tonumber(ARGV[7])
for i = 9, #ARGV, 2 do
  redis.call('XADD', s, '0-' .. string.format('%d', seq), 't', ARGV[i], 'd', ARGV[i + 1])
  seq = seq + 1
end
redis.call('HSET', meta, 'owner', ARGV[1], 'has_owner', ARGV[2], 'session_id', ARGV[3],
  'finished', ARGV[4], 'locale', ARGV[8])
redis.call('EXPIRE', meta, ARGV[6])
redis.call('EXPIRE', s, ARGV[6])
if ARGV[4] == '1' then
  redis.call('DEL', alive)
else
  redis.call('SET', alive, '1', 'PX', ARGV[5])
end
return 1
"""

# A reader declares a stream lost: only if the owner's lease is gone and the stream is known
# and not finished. The terminal error goes after the last id the stream ever had, and the
# stream's last id then jumps past every `0-<seq>` (XSETID), so no late write of the owner
# can follow it. KEYS: meta, alive, s. ARGV: the error's JSON, expiry s.
# Returns 1 declared now, 2 already lost, 0 finished, -1 the lease is live, -2 gone.
DECLARE_LOST = """
local meta, alive, s = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', alive) == 1 then
  return -1
end
if redis.call('HEXISTS', meta, 'has_owner') == 0 then
  return -2
end
if redis.call('HGET', meta, 'finished') == '1' then
  if redis.call('HGET', meta, 'lost') == '1' then
    return 2
  end
  return 0
end
local last = 0
if redis.call('EXISTS', s) == 1 then
  local info = redis.call('XINFO', 'STREAM', s)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      last = tonumber(string.match(info[i + 1], '%-(%d+)$'))
    end
  end
end
redis.call('XADD', s, '0-' .. string.format('%d', last + 1), 't', 'error', 'd', ARGV[1])
redis.call('XSETID', s, '1-0')
redis.call('HSET', meta, 'finished', '1', 'lost', '1')
redis.call('EXPIRE', meta, ARGV[2])
redis.call('EXPIRE', s, ARGV[2])
return 1
"""

RENEWED, GONE, LOST = 1, 0, 2
DECLARED, ALREADY_LOST, FINISHED, LEASE_LIVE, UNKNOWN = 1, 2, 0, -1, -2
