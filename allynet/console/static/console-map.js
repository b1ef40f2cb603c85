/* The console's live map: MapLibre GL JS (vendored) drawing the page's GeoJSON endpoint.
 *
 * Base map: the page's data-tile-url (CONSOLE_TILE_URL): a raster tile template with {z}/{x}/{y},
 * or a MapLibre style URL; none draws the layers on a blank background, so the map works with no
 * tile server at all. Layers: the dispatcher's service areas, official alerts, reports and open
 * SOS, one GeoJSON source each, refreshed (setData) whenever console-live.js (loaded first) refreshes
 * the page.
 * The container keeps the ids it shows in data-sos / data-reports / data-alerts and its state in
 * data-state (loading, ready, no-webgl); without WebGL the lists beside it still show everything.
 */
(function () {
  "use strict";
  var el = document.getElementById("map");
  if (!el) { return; }
  var live = window.allynetConsole || {};
  var LAYERS = ["areas", "alerts", "reports", "sos"];
  var map = null, loaded = false, latest = null, framed = false;

  function blankStyle() {
    return {version: 8, sources: {},
            layers: [{id: "background", type: "background", paint: {"background-color": "#e8edf2"}}]};
  }

  function baseStyle() {
    var url = el.dataset.tileUrl;
    if (!url) { return blankStyle(); }
    if (url.indexOf("{z}") === -1) { return url; }
    var style = blankStyle();
    style.sources.base = {type: "raster", tiles: [url], tileSize: 256};
    style.layers.push({id: "base", type: "raster", source: "base"});
    return style;
  }

  function noWebgl(error) {
    el.dataset.state = "no-webgl";
    el.textContent = "The map needs WebGL, which this browser does not offer: the lists show everything on it.";
    if (error) { console.warn("map unavailable", error); }
  }

  function addLayers() {
    LAYERS.forEach(function (name) {
      map.addSource(name, {type: "geojson", data: {type: "FeatureCollection", features: []}});
    });
    map.addLayer({id: "areas-fill", type: "fill", source: "areas",
                  paint: {"fill-color": "#1f3a5f", "fill-opacity": 0.08}});
    map.addLayer({id: "areas-line", type: "line", source: "areas",
                  paint: {"line-color": "#1f3a5f", "line-width": 2}});
    [["alerts", "#6a4c93", 8], ["reports", "#f08a24", 7], ["sos", "#d7263d", 10]].forEach(function (layer) {
      map.addLayer({id: layer[0], type: "circle", source: layer[0],
                    paint: {"circle-color": layer[1], "circle-radius": layer[2],
                            "circle-stroke-color": "#ffffff", "circle-stroke-width": 2}});
      map.on("click", layer[0], function (event) {
        var p = event.features[0].properties;
        var text = [p.type, p.status, p.description].filter(Boolean).join(" · ");
        new maplibregl.Popup({closeButton: true}).setLngLat(event.lngLat).setText(text).addTo(map);
      });
    });
  }

  function frame(data) {
    // Once: the dispatcher's area, else everything on the map, else the whole world.
    var bounds = new maplibregl.LngLatBounds();
    var features = data.areas.features.length ? data.areas.features
      : data.sos.features.concat(data.reports.features, data.alerts.features);
    features.forEach(function (feature) {
      var g = feature.geometry;
      var rings = g.type === "Point" ? [[g.coordinates]] : g.type === "Polygon" ? g.coordinates
        : g.type === "MultiPolygon" ? [].concat.apply([], g.coordinates) : [];
      rings.forEach(function (ring) { ring.forEach(function (c) { bounds.extend(c); }); });
    });
    if (!bounds.isEmpty()) {
      map.fitBounds(bounds, {padding: 40, maxZoom: 14, duration: 0});
    }
    framed = true;
  }

  function show(data) {
    latest = data;
    ["sos", "reports", "alerts"].forEach(function (name) {
      el.dataset[name] = data[name].features.map(function (f) { return f.id; }).join(" ");
    });
    if (!loaded) { return; }
    LAYERS.forEach(function (name) { map.getSource(name).setData(data[name]); });
    if (!framed) { frame(data); }
  }

  function refreshData() {
    return live.get(el.dataset.dataUrl, "application/json")
      .then(function (response) { return response.json(); })
      .then(show);
  }

  if (!live.get) { return; }  // console-live.js did not start (no session): nothing to draw
  live.refreshers.push(refreshData);
  if (typeof maplibregl === "undefined" || !maplibregl.Map) { noWebgl(); return; }
  try {
    map = new maplibregl.Map({container: el, style: baseStyle(), center: [0, 20], zoom: 1,
                              attributionControl: {compact: true}});
  } catch (error) {
    noWebgl(error);
    refreshData();
    return;
  }
  live.map = map;
  map.addControl(new maplibregl.NavigationControl({showCompass: false}));
  map.on("error", function (event) { console.warn("map error", event && event.error); });
  map.on("load", function () {
    addLayers();
    loaded = true;
    if (latest) { show(latest); }
    map.once("idle", function () { el.dataset.state = "ready"; });
  });
  refreshData();
}());
