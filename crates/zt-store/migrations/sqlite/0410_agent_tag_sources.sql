-- Where a host's tag came from (issue 13): `assigned` through the API, `reported` by the
-- agent with its inventory (`zerotrace-agent --tag`). Each source replaces only its own set;
-- a row lives while either holds it. Tags stored before were all set through the API.
ALTER TABLE agent_tags ADD COLUMN assigned INTEGER NOT NULL DEFAULT 1;
ALTER TABLE agent_tags ADD COLUMN reported INTEGER NOT NULL DEFAULT 0;
