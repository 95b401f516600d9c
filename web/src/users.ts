// Profiles by id, fetched once per page load (an avatar whose brief carries no link of its own).
import { get, Id, Profile } from "./api";

const cache = new Map<Id, Promise<Profile | null>>();

export function userById(id: Id): Promise<Profile | null> {
  let p = cache.get(id);
  if (!p) {
    p = get<Profile>(`/api/accounts/users/${id}/`).catch(() => null);
    cache.set(id, p);
  }
  return p;
}
